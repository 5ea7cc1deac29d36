"""A fast re-check of the password inside one continuous signing session (21 CFR 11.200).

Part 11 asks for the password on every signature; argon2id makes each full check cost a few
hundred milliseconds of CPU and tens of MiB on purpose, which is right for a login but makes a
nurse wait at every step, and queues a whole ward behind one core.

So when a session starts with both components checked by argon2id, the session also keeps a
*verifier*: ``salt$HMAC-SHA256(site key, salt, user id, stored hash, password)``. A later
signature in the same continuous session matches the typed password against it in
microseconds. It proves the same thing as the full check (this person, this password, now):

* the site key lives in the home (``pki/session-verifier.key``, mode 0600), never in the
  database, so a copy of the database (where web sessions live) is no oracle to guess against;
* the stored argon2 hash is part of the message, so a password change or reset anywhere makes
  every older verifier fail, and the full check runs again;
* a mismatch is never a refusal by itself: the full argon2id check decides, and counts toward
  the lockout exactly as before; lock, deactivation, expiry and role checks always run;
* the verifier lives only in its own session and is wiped when the session ends.

A second person signing at someone else's tablet (the blinded second checker) types both
components every time; the tablet's session keeps a verifier for them too, made by their last
full check there and used only within the same continuity limits (``Credentials.cosigning``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from workflow.private_files import make_private_dir, refuse_if_exposed

KEY_FILE = "session-verifier.key"
_KEY_BYTES = 32


class SessionVerifier:
    def __init__(self, key: bytes) -> None:
        if len(key) < _KEY_BYTES:
            raise ValueError("the session verifier key must be at least 32 bytes")
        self._key = key

    def make(self, user_id: str, password_hash: str, password: str) -> str:
        salt = secrets.token_hex(16)
        return f"{salt}${self._mac(salt, user_id, password_hash, password)}"

    def matches(self, verifier: str, user_id: str, password_hash: str, password: str) -> bool:
        salt, sep, mac = verifier.partition("$")
        if not sep or not salt or not mac:
            return False
        return hmac.compare_digest(mac, self._mac(salt, user_id, password_hash, password))

    def _mac(self, salt: str, user_id: str, password_hash: str, password: str) -> str:
        # NUL-separated: no field can contain NUL (usernames, ids and argon2 strings are
        # printable; the web refuses NUL in every field), so the parts cannot be re-split.
        message = "\0".join((salt, user_id, password_hash, password)).encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def load_session_key(folder: Path) -> bytes:
    """The site's verifier key from ``folder`` (the home's ``pki/``), made on first use.

    Every server process of a site shares the home, so they share the key; two processes
    creating it at once both end up reading the one that won the exclusive create."""
    make_private_dir(folder)
    path = folder / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(_KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
    # A key others can read lets them forge verifiers and the trail's name digests (issue 13.5).
    refuse_if_exposed(path)
    for _ in range(100):  # another process may be between its create and its write
        key = path.read_bytes()
        if len(key) >= _KEY_BYTES:
            return key
        time.sleep(0.02)
    # A create cut off before its write: never check passwords against a short key.
    raise OSError(f"{path} is shorter than {_KEY_BYTES} bytes; remove it to make a new one")
