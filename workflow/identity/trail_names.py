"""How the security trail names a username that no account holds.

People type their password into the user-id field: a trail that kept every unknown name as
typed would keep passwords (OWASP ASVS 7.1.1: no credentials in logs). Yet guesses at one
unknown name must still be counted together, so that name locks as an account would (lockout
must not tell which usernames exist). So the trail keeps a stable, keyed digest instead:
``unknown:<HMAC-SHA256(site key, name)>``, cut to 128 bits. The key is the home's
``pki/session-verifier.key``, never in the database, so a copy of the database is no oracle to
test guesses against. An auditor asking about a name (``Identity.auth_events(username=...)``)
is shown the digest's events for it all the same.

Without a site key (a library user with no home) the digest is an unkeyed SHA-256: still no
plain text in the trail, but a copy of the database could be tested against a word list.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "unknown:"  # ":" is never in a username (users.USERNAME_PATTERN), so no clash
_DOMAIN = b"bedside unknown username\0"


def unknown_name(typed: str, key: bytes | None) -> str:
    message = _DOMAIN + typed.encode("utf-8")
    if key:
        digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    else:
        digest = hashlib.sha256(message).hexdigest()
    return PREFIX + digest[:32]
