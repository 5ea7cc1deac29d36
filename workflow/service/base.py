"""What every job of :class:`workflow.service.Bedside` stands on: the installation (store,
people, clock, zone), the protocols its cases replay on (with the site formulary), loading a
case, and checking who signs (a refused signature is kept in the case's trail)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, tzinfo
from typing import Any

from workflow.core.clock import Clock, SystemClock
from workflow.core.errors import AuthError, ConflictError, InputError, NotFound, StepRefused
from workflow.core.events import Signer, parse_time
from workflow.core.machine import Case
from workflow.core.protocol import Protocol
from workflow.core.protocol.model import Product
from workflow.identity import AuthRefused, Credentials, Identity
from workflow.identity.errors import WRONG_ROLE
from workflow.service.records_later import RecordsWriter
from workflow.service.replayed import ReplayedCases
from workflow.service.tablet_signing import TabletProof
from workflow.service.views import FORMULARY_SOURCE, CaseView, Proof
from workflow.settings import Settings
from workflow.store import COURSE_ACTIVE, COURSE_DISCONTINUED, Course, Store, pinning
from workflow.store import formulary as formulary_rows
from workflow.store.formulary import FormularyProduct
from workflow.store.web_sessions import SignatureMark

# Cases whose protocol is remembered (:meth:`ServiceBase._protocol_hash_of`): 64 bytes or so
# each, far more than a ward's open doses.
CASE_PROTOCOLS = 10_000
# Protocols with the site's products (with_site_formulary): one per protocol in use and list
# of products; the list only grows, so the older ones are not asked for again.
PROTOCOLS_WITH_PRODUCTS = 64


class ServiceBase:
    """One installation: a store, its people, the protocols it knows, a clock."""

    def __init__(
        self,
        store: Store,
        protocol: Protocol,
        *,
        clock: Clock | None = None,
        identity: Identity | None = None,
        tz: tzinfo = UTC,
        archiver: Callable[[Case, str], Sequence[str]] | None = None,
    ) -> None:
        self.store = store
        self.protocol = protocol
        self.clock: Clock = clock or SystemClock()
        self.identity = identity or Identity(store)
        self.tz = tz
        self.archiver = archiver
        # Set by `bedside serve` (Bedside.write_records_later): an ending case's records are
        # made just after its closing step instead of inside it. None: inline, as before.
        self.records_later: RecordsWriter | None = None
        self.settings: Settings = Settings()
        self._protocols: dict[str, Protocol] = {protocol.content_hash: protocol}
        self._case_protocols: dict[str, str] = {}  # case id -> its protocol's hash
        self.replayed = ReplayedCases()
        # (protocol, the site's products) -> (the protocol, it with them): with_site_formulary.
        self._protocols_with: dict[
            tuple[int, tuple[FormularyProduct, ...]], tuple[Protocol, Protocol]
        ] = {}
        self._saved_protocol = False

    def add_protocol(self, protocol: Protocol) -> None:
        """Make an older protocol version known so cases that started on it replay on it."""
        self._protocols[protocol.content_hash] = protocol

    def protocol_for(self, content_hash: str) -> Protocol:
        """The protocol a case started on: loaded, or read back from the store by its hash."""
        known = self._protocols.get(content_hash)
        if known is not None:
            return known
        # A protocol alone, or a protocol + institution overlay pair (see workflow.store.pinning).
        protocol = pinning.restore(self.store, content_hash)
        self._protocols[content_hash] = protocol
        return protocol

    def _remember_protocol(self) -> None:
        """Keep the current protocol's exact text, so its cases replay on it after upgrades."""
        if self._saved_protocol:
            return
        pinning.remember(self.store, self.protocol)
        # Inside a caller's transaction (an order from the hospital) the text may yet be rolled
        # back with it: saving is idempotent, so it is saved again until once outside one.
        self._saved_protocol = not self.store.in_atomic()

    def load(self, case_id: str) -> CaseView:
        """The case replayed from its chain-checked events (only those added since this
        process last loaded it are replayed: service/replayed.py), the caller's own copy."""
        loaded = self.store.load_for_replay(case_id)
        record = loaded.record
        protocol = self._with_products(self.protocol_for(record.protocol_hash), loaded.formulary)
        case = self.replayed.replay(protocol, case_id, loaded.events, loaded.hashes)
        return CaseView(record, case)

    def formulary(self) -> list[FormularyProduct]:
        """The products pharmacists listed here, by kind and description."""
        return formulary_rows.list_products(self.store.engine)

    def with_site_formulary(self, protocol: Protocol) -> Protocol:
        """``protocol`` with the site's listed products added to its own (an overlay's), so a
        scan of a product a pharmacist listed is known to the case machine. Rows are never
        removed, so a case replays on a list that still holds every product it scanned."""
        return self._with_products(protocol, self.formulary())

    def _with_products(self, protocol: Protocol, site: Sequence[FormularyProduct]) -> Protocol:
        """:meth:`with_site_formulary` for products read already. The same protocol and rows
        give the same object, not an equal new one: its shared case machine (built per
        protocol object, core/case_machine.py) and the replayed cases kept for it (keyed by
        the object) are found again instead of built again on every load."""
        if not site:
            return protocol
        key = (id(protocol), tuple(site))
        found = self._protocols_with.get(key)
        # Keyed by the object (equal content is not enough to be sure); the entry holds it, so
        # its id is not reused while the entry stands. Rows added: another key, a new object.
        if found is not None and found[0] is protocol:
            return found[1]
        made = self._add_products(protocol, site)
        if len(self._protocols_with) >= PROTOCOLS_WITH_PRODUCTS:
            self._protocols_with.clear()
        self._protocols_with[key] = (protocol, made)
        return made

    @staticmethod
    def _add_products(protocol: Protocol, site: Sequence[FormularyProduct]) -> Protocol:
        known = {p.gtin for p in protocol.formulary}
        added = tuple(
            Product(f.gtin, f.kind, f"{f.description} {f.strength}", FORMULARY_SOURCE, True)
            for f in site
            if f.gtin not in known and f.kind in protocol.scan_steps()
        )
        return replace(protocol, formulary=protocol.formulary + added)

    def course_cases(self, course_id: str) -> list[Case]:
        records = sorted(
            self.store.list_cases(course_id=course_id),
            key=lambda r: (r.dose_in_course, r.updated_at),
        )
        out: list[Case] = []
        for rec in records:
            out.append(self.load(rec.id).case)
        out.sort(key=lambda c: c.events[0].at)
        return out

    def signer(
        self,
        proof: Proof,
        allowed_roles: Sequence[str],
        *,
        case_id: str | None = None,
        expected_version: int | None = None,
        step: str | None = None,
    ) -> Signer:
        """Authenticate the signer in the first allowed role they hold. A refused attempt is
        written to the case's own trail as well as the security log (never the password)."""
        now = self.clock.now()
        if isinstance(proof, TabletProof):
            proof = proof.proof
        username = proof.username if isinstance(proof, Credentials) else proof.session.username
        try:
            # In the first allowed role the signer holds, chosen by the check from the account
            # row it reads (not from a read of the account of its own: bench/profile_step.py).
            return self.identity.sign_as(proof, allowed_roles, now)
        except AuthRefused as exc:
            # A wrong role is not a failed signature of this case: the security log keeps it.
            if case_id is not None and expected_version is not None and exc.reason != WRONG_ROLE:
                self._record_failure(case_id, expected_version, username, exc, step)
            raise

    def _record_failure(
        self, case_id: str, version: int, username: str, exc: AuthRefused, step: str | None
    ) -> None:
        view = self.load(case_id)
        if view.version != version or view.case.closed:
            return  # moved on, or ended (its records are signed): the security log has it
        # What was typed as the user id is often a password: the case keeps only an account
        # it names, never the text (the security log keeps a keyed digest of unknown names).
        try:
            user = self.identity.get_user(username)
            known: tuple[str | None, str | None] = (user.id, user.username)
        except (AuthError, NotFound, InputError):
            known = (None, None)
        event = view.case.record_failed_signature(
            known[1], exc.reason, self.clock.now(), step, user_id=known[0]
        )
        proto = view.case.protocol
        # If someone else moved the case on, the security log still has the attempt.
        with contextlib.suppress(ConflictError):
            self.store.append(
                case_id,
                version,
                [event],
                protocol_version=proto.version,
                protocol_hash=proto.content_hash,
                state=view.case.state,
            )

    def _protocol_hash_of(self, case_id: str) -> str:
        """The protocol a case was opened on. Written with the case and never updated (an
        append changes a case's version, state and times only), so it is read once per case:
        a signature no longer reads the case row just to find its step (bench/profile_step.py).
        A case not found is not kept (NotFound each time); bounded by starting afresh."""
        known = self._case_protocols.get(case_id)
        if known is None:
            known = self.store.get_case(case_id).protocol_hash
            if len(self._case_protocols) >= CASE_PROTOCOLS:
                self._case_protocols.clear()
            self._case_protocols[case_id] = known
        return known

    def _mark(self, proof: Proof) -> SignatureMark | None:
        """What a checked signature changes in the web session it was typed in (none for a
        signature at the command line)."""
        return proof.mark(self.clock.now()) if isinstance(proof, TabletProof) else None

    def _step(self, case_id: str, step_id: str) -> Any:
        protocol = self.protocol_for(self._protocol_hash_of(case_id))
        try:
            return protocol.step(step_id)
        except KeyError:
            raise StepRefused(
                "unknown_step",
                f"'{step_id}' is not a step of this protocol "
                f"(steps: {', '.join(protocol.step_ids())})",
                field="step",
            ) from None

    def _course_active(self, course: Course) -> None:
        if course.status == COURSE_DISCONTINUED:
            ended = next(
                (c for c in self.course_cases(course.id) if c.state == "discontinued"), None
            )
            why = ""
            if ended is not None and ended.end:
                at = ended.end.get("at")
                when = f"{parse_time(str(at)):%Y-%m-%d %H:%M} UTC" if at else "an unknown time"
                why = (
                    f" on {when} at cycle {ended.cycle} dose {ended.dose_in_cycle} (course dose "
                    f"{ended.dose_in_course}): {ended.end.get('note') or ended.end.get('reason')}"
                )
            raise StepRefused(
                "course_discontinued",
                f"Course {course.id} was permanently discontinued{why}. No further dose may be "
                "given on it.",
            )
        if course.status != COURSE_ACTIVE:
            raise StepRefused("course_closed", f"Course {course.id} is {course.status}")
