"""The pharmacy bench and the bedside scans: the site formulary (listing a product is a
pharmacist's signature), the bag's label code, the balance, the patient's wristband. Part of
:class:`workflow.service.Bedside`."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from workflow.core.errors import InputError, NotFound, StepRefused
from workflow.core.events import format_time
from workflow.service.base import ServiceBase
from workflow.service.views import (
    FORMULARY_MEANING,
    FORMULARY_ROLE,
    BalanceReading,
    CaseView,
    Proof,
    gs1_check_digit_ok,
)
from workflow.store import formulary as formulary_rows
from workflow.store.formulary import FormularyEvent, FormularyProduct

if TYPE_CHECKING:  # pyserial loads only when a balance is read
    from workflow.interop.balance import Weight


class Bench(ServiceBase):
    """Mixed into :class:`workflow.service.Bedside`: scans, weights and the formulary."""

    def formulary_events(self) -> list[FormularyEvent]:
        """Every change to the site formulary, oldest first (who, when, what, meaning)."""
        return formulary_rows.list_events(self.store.engine)

    def add_to_formulary(
        self, gtin: str, kind: str, description: str, strength: str, proof: Proof
    ) -> FormularyProduct:
        """List a product (GTIN -> kind, description, strength), signed by a pharmacist with
        their password like any signature (meaning ``approved``); the change and the signature
        are audit events. Bad input names the field and what is allowed."""
        digits = gtin.strip()
        if not digits.isdigit() or len(digits) not in (8, 12, 13, 14):
            raise InputError("gtin", f"'{gtin}' is not a GTIN", "8, 12, 13 or 14 digits")
        digits = digits.zfill(14)
        if not gs1_check_digit_ok(digits):
            raise InputError("gtin", f"{digits}: the check digit is wrong; read the code again")
        kinds = self.protocol.scan_steps()
        if kind not in kinds:
            raise InputError("kind", f"'{kind}' is not a scanned item", ", ".join(kinds))
        texts = {"description": (description, 200), "strength": (strength, 100)}
        for name, (value, most) in texts.items():
            if not value.strip() or len(value) > most or not value.isprintable():
                raise InputError(name, "must be printable text", f"1 to {most} characters")
        if any(p.gtin == digits for p in self.protocol.formulary):
            raise InputError("gtin", f"GTIN {digits} is in the protocol's formulary already")
        now = self.clock.now()
        signer = self.signer(proof, (FORMULARY_ROLE,))
        return formulary_rows.add_product(
            self.store.engine,
            gtin=digits,
            kind=kind,
            description=" ".join(description.split()),
            strength=" ".join(strength.split()),
            signer=signer,
            meaning=FORMULARY_MEANING,
            now=now,
            session=self._mark(proof),
        )

    def check_bag_scan(self, case_id: str, text: str) -> dict[str, Any]:
        """The bag's label code checked against this dose now (closed loop, issue 16.4), by
        the same core check that signing the bedside step runs (``bag_check.check_bag``):
        the entry values it proves, or StepRefused naming both the bag and this dose."""
        from workflow.core.bag_check import asked_now, check_bag
        from workflow.core.gs1 import stored_form

        case = self.load(case_id).case
        try:
            code = check_bag(case, text, self.clock.now(), asked_now(case))
        except StepRefused as exc:
            raise self.naming_the_bag(exc, text) from exc
        # Only what the code itself says (the label the person holds), never the plan's.
        return {
            "bag_entry": "scanned",
            "bag_scan": stored_form(text),
            "case_id": code.case_id,
            "cycle": code.cycle,
            "dose_in_cycle": code.dose_in_cycle,
            "use_before": code.use_before.isoformat(),
            "drug": code.drug,
            "dose_iu": int(code.dose_iu) if code.dose_iu is not None else None,
            "final_volume_ml": str(code.final_volume_ml) if code.final_volume_ml else None,
            "infusion_minutes": _text(code.infusion_minutes),
            "pump_rate_ml_per_h": _text(code.pump_rate_ml_per_h),
            "route": code.route,
        }

    def naming_the_bag(self, exc: StepRefused, scanned: object) -> StepRefused:
        """A ``wrong_bag`` refusal with the patient the scanned bag was prepared for added to its
        words; any other refusal as it is. Every door's bag scan comes here (checking a scan on
        its own, signing the step that scans the bag), so the web, the JSON API and the CLI say
        the same words."""
        if exc.reason != "wrong_bag":
            return exc
        return StepRefused(
            exc.reason,
            f"{exc.message}{self._whose_bag(scanned)}",
            field=exc.field,
            details=exc.details,
            fields=exc.fields,
        )

    def _whose_bag(self, scanned: object) -> str:
        """The patient a wrong bag was prepared for, in words (the core's refusal names the bag
        by its case id alone: it knows only this case). Blinding: the name, the cycle and the
        dose number only, never the identifiers an independent check asks for (MRN, date of
        birth); nothing when the code names no case here."""
        from workflow.core.gs1 import parse_bag_code

        try:
            code = parse_bag_code(str(scanned))
            other = self.load(code.case_id).case
        except (StepRefused, NotFound):
            return ""
        if other.patient is None:
            return ""
        return (
            f". The scanned bag was prepared for {other.patient.name} (dose {other.dose_in_cycle} "
            f"of cycle {other.cycle})"
        )

    def read_balance(self) -> Weight:
        """One stable weight from the bench's balance (settings ``bench.balance_port``), in
        MT-SICS; StepRefused("no_balance") when none is configured (weights are then typed
        in with a reason), StepRefused("balance_error") when the balance cannot give one."""
        if self.settings.balance_port is None:
            raise StepRefused(
                "no_balance",
                "No balance is configured here (bench.balance_port in bedside.yaml): type the "
                "weight in and say why",
            )
        from workflow.interop.balance import read_stable

        return read_stable(self.settings.balance_port, baud=self.settings.balance_baud)

    def read_balance_for(self, case_id: str, item_id: str) -> BalanceReading:
        """One stable weight for ``item_id`` of the case, with the balance's reply line and
        serial number and a seal over them: the form carries the reading to the signature,
        where :meth:`balance_readings` checks the seal, so the reply kept in the signed event
        is the one this server read (a reading typed or altered in the browser is refused)."""
        weight = self.read_balance()
        read_at = format_time(self.clock.now())
        seal = self._seal(case_id, item_id, weight.reply, weight.serial, read_at)
        return BalanceReading(item_id, weight.grams, weight.reply, weight.serial, read_at, seal)

    def balance_readings(
        self, case_id: str, sent: Mapping[str, Mapping[str, str]]
    ) -> dict[str, dict[str, str]]:
        """The readings a signed form sends back, by item, each checked against its seal (this
        server process read it for this case and item); StepRefused naming the item if not."""
        out: dict[str, dict[str, str]] = {}
        for item_id, r in sent.items():
            reply, serial, read_at = r.get("reply", ""), r.get("serial", ""), r.get("read_at", "")
            expected = self._seal(case_id, item_id, reply, serial, read_at)
            if not hmac.compare_digest(expected, str(r.get("seal", ""))):
                raise StepRefused(
                    "balance_reading",
                    f"'{item_id}': this balance reading was not made here for this dose (or the "
                    "server restarted since): read the balance again",
                    field=item_id,
                )
            out[item_id] = {"reply": reply, "serial": serial, "read_at": read_at}
        return out

    def _seal(self, case_id: str, item_id: str, reply: str, serial: str, read_at: str) -> str:
        key = self.__dict__.setdefault("_balance_key", secrets.token_bytes(32))
        text = "\x1f".join((case_id, item_id, reply, serial, read_at)).encode()
        return hmac.new(key, text, hashlib.sha256).hexdigest()

    def check_wristband(self, view: CaseView, scanned: str, *, show_dose_mrn: bool) -> str:
        """The MRN a wristband scan carries, once it is this dose's patient's.

        A scanner acting as a keyboard types the barcode (the MRN) and Enter. A scan that is
        another patient's, or no patient's, is refused (StepRefused ``wrong_patient``, field
        ``scan_wristband``) with both identities in words. ``show_dose_mrn`` is False while the
        person is at an independent check (workflow.core.blinding): the dose's MRN is then
        left out of the words, its name stays (the nurse needs it to find the patient).
        """
        mrn = scanned.strip("\r\n\t ")
        if not mrn or len(mrn) > 64 or not mrn.isprintable():
            raise InputError("scan_wristband", "the wristband scan is empty or not an MRN")
        dose = self.store.get_patient(view.record.patient_id)
        if mrn == dose.mrn:
            return mrn
        worn = self.store.find_patient_by_mrn(mrn)
        band = f"{worn.display_name} MRN {worn.mrn}" if worn else f"MRN {mrn} (no patient has it)"
        ours = dose.display_name + (
            f" MRN {dose.mrn}" if show_dose_mrn else " (MRN not shown at an independent check)"
        )
        raise StepRefused(
            "wrong_patient",
            f"Wrong patient: wristband: {band} — this dose: {ours}. Do not give this dose; "
            "find the patient this dose is for",
            field="scan_wristband",
        )

    def badge_pdf(self, username: str) -> bytes:
        """A test staff badge for this account (NotFound when none has the user id)."""
        from workflow.core.titles import role_title
        from workflow.records.badge import badge_pdf

        user = self.identity.get_user(username.strip())
        roles = [role_title(self.protocol, r) for r in sorted(user.roles)]
        return badge_pdf(user.username, user.printed_name, roles)

    def wristband_pdf(self, mrn: str) -> bytes:
        """A test wristband for the patient with this MRN (NotFound when none has it)."""
        from workflow.records.wristband import wristband_pdf

        patient = self.store.find_patient_by_mrn(mrn.strip())
        if patient is None:
            raise NotFound(f"no patient has MRN {mrn.strip()!r}")
        return wristband_pdf(patient.display_name, patient.mrn, patient.date_of_birth)


def _text(number: Decimal | None) -> str | None:
    """A number of the bag code as its label prints it ("15", "209.1"); None when absent."""
    return f"{number:f}" if number is not None else None
