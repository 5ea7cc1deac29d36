"""GS1 barcodes on vials, diluent and bags: a scan becomes entry values, or a clear refusal.

A 2D scanner in keyboard mode types the GS1 DataMatrix element string: optionally the
symbology identifier (``]d2``), then application identifiers (01 GTIN, 17 expiry YYMMDD, 10
lot, ...), with FNC1 sent as the group separator (ASCII 29) after variable-length fields. Some
scanners are set to send a visible stand-in for it instead, and labels print the human-readable
form with parentheses; all of these are accepted. biip does the GS1 parsing and check digits.

The products a scan may be come from the institution's formulary (an overlay): no retrieved
source gives a GTIN for any product, so Bedside ships none. A scan that fails is never forced:
the person types the values with a reason code, which is recorded and reported
(``interop.scan_report``), so workarounds show up instead of hiding.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

import biip
from biip.gs1_messages import GS1Message

from workflow.core.errors import InputError, StepRefused
from workflow.core.items import from_stored, to_stored
from workflow.core.protocol.model import Protocol, Step


class _ShippedScanSteps(Mapping[str, str]):
    """Scanned product kind -> its step, as the shipped protocol declares them (steps'
    ``scans``), read when first asked. Kept under this name for callers that build argument
    choices before any protocol is loaded (the CLI's ``scan --item``); everything here reads
    the protocol in use (``Protocol.scan_steps``)."""

    def _steps(self) -> dict[str, str]:
        return _shipped_scan_steps()

    def __getitem__(self, kind: str) -> str:
        return self._steps()[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps())

    def __len__(self) -> int:
        return len(self._steps())


@cache
def _shipped_scan_steps() -> dict[str, str]:
    from workflow.core.protocol.loader import load_protocol
    from workflow.resources import default_protocol_path

    return load_protocol(default_protocol_path()).scan_steps()


SCAN_STEPS: Mapping[str, str] = _ShippedScanSteps()
TYPED_REASONS = ("unreadable_label", "no_barcode", "scanner_down", "unknown_product")
GROUP_SEPARATOR = "\x1d"
# Visible stand-ins scanners and terminals use for FNC1 / GS.
_GS_STAND_INS = ("<GS>", "{GS}", "[GS]", "\\x1d", "\\u001d", "\u241d", "^]")


@dataclass(frozen=True)
class Scan:
    gtin: str
    lot: str
    expiry: date


def _normalised(text: str) -> str:
    raw = text.strip("\r\n\t ")
    for stand_in in _GS_STAND_INS:
        raw = raw.replace(stand_in, GROUP_SEPARATOR)
    return raw


def stored_form(text: str) -> str:
    """The scan as the record keeps it: one printable line, the group separator as ``<GS>``
    (a form ``parse_scan`` reads back), so the entry can be re-read and re-checked."""
    return _normalised(text).replace(GROUP_SEPARATOR, "<GS>")


def parse_scan(text: str) -> Scan:
    """GTIN, lot and expiry of one scanned element string; StepRefused("unreadable") if not."""
    raw = _normalised(text)
    if not raw:
        raise _unreadable("the scan is empty")
    try:
        message = GS1Message.parse_hri(raw) if raw.startswith("(") else biip.parse(raw).gs1_message
    except Exception as exc:  # biip raises its own ParseError family for malformed text
        raise _unreadable(f"not a GS1 element string ({exc})") from None
    if message is None:
        raise _unreadable("not a GS1 element string")
    found = {e.ai.ai: e for e in message.element_strings}
    missing = [
        name for ai, name in (("01", "GTIN"), ("10", "lot"), ("17", "expiry")) if ai not in found
    ]
    if missing:
        raise _unreadable(f"the code has no {', '.join(missing)}")
    gtin_el, lot_el, exp_el = found["01"], found["10"], found["17"]
    if gtin_el.gtin is None:
        raise _unreadable(f"GTIN {gtin_el.value}: {gtin_el.gtin_error or 'invalid'}")
    if exp_el.date is None:
        raise _unreadable(f"expiry {exp_el.value} is not a date")
    if GROUP_SEPARATOR in lot_el.value or not lot_el.value.isprintable():
        raise _unreadable("the lot runs into another field (a group separator is missing)")
    return Scan(gtin_el.value, lot_el.value, exp_el.date)


# The bag's own code (issue 16.4): GS1 company-internal AIs, which the GS1 General
# Specifications leave to the issuing organisation, and 7003 (expiration date and time).
AI_BEYOND_USE = "7003"  # YYMMDDhhmm; Bedside writes and reads it in UTC
AI_CASE = "91"  # the case id: one dose of one course
AI_DOSE = "92"  # "C{cycle}D{dose}", e.g. C1D3
# What the label prints of the preparation (issue 12.4: the double checks scan it instead of
# typing it). Optional on reading: codes printed before protocol 1.6.0 lack them and replay.
AI_DRUG = "93"  # the protocol's drug, as the label prints it: "aldesleukin"
AI_DOSE_IU = "94"  # the dose in IU, a whole number: "4080000"
AI_VOLUME_ML = "95"  # the final volume in mL, as the label prints it: "50.0"
# What the label prints of the administration (issue 12.4, protocol 1.7.0: the double checks
# scan these too). Optional on reading like 93-95: codes printed before lack them and replay.
AI_INFUSION_MINUTES = "96"  # the infusion time in minutes, as the label prints it: "15"
AI_PUMP_RATE = "97"  # the pump rate in mL/h, as the label prints it (0.1 mL/h): "209.1"
AI_ROUTE = "98"  # the protocol's route id (the label prints its word): "intravenous"
# No patient identifier: the case id names the patient, and the step that scans the bag is
# unprimed (the MRN would show on the record to a nurse who must read it off the wristband).
# The GS1 AI encodable character set 82 (for the X..90 company-internal AIs), less the
# parentheses, which would end a value early in the human-readable form.
_GS1_TEXT = re.compile(r"^[!\"%&'*+,\-./0-9:;<=>?A-Z_a-z]{1,90}$")
_DOSE = re.compile(r"^C([0-9]{1,3})D([0-9]{1,3})$")
_WHOLE = re.compile(r"^[0-9]{1,12}$")
_DECIMAL = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,3})?$")


@dataclass(frozen=True)
class BagCode:
    """What a bag label's code says: the dose it was made for and its beyond-use time."""

    case_id: str
    cycle: int
    dose_in_cycle: int
    use_before: datetime  # UTC, to the minute (7003 has no seconds)
    # What the label prints of the preparation; None in a code printed before they were added.
    drug: str | None = None
    dose_iu: Decimal | None = None
    final_volume_ml: Decimal | None = None
    # What the label prints of the administration; None in a code printed before protocol 1.7.0.
    infusion_minutes: Decimal | None = None
    pump_rate_ml_per_h: Decimal | None = None
    route: str | None = None


def gs1_text_problem(what: str, value: str) -> str | None:
    """Why ``value`` cannot go into a company-internal AI, or None when it can."""
    if _GS1_TEXT.match(value):
        return None
    return (
        f"{what} '{value}' cannot be put in a GS1 code: 1 to 90 letters, digits and "
        "!\"%&'*+,-./:;<=>?_ only"
    )


def bag_element_string(code: BagCode) -> str:
    """The code in GS1 human-readable form, ``(7003)...(91)...(92)...``: what the symbol
    encodes (the writer sets FNC1 first and between the variable-length fields)."""
    problem = gs1_text_problem("case id", code.case_id)
    if problem:
        raise InputError("label", problem)
    bud = code.use_before.astimezone(UTC)
    text = (
        f"({AI_BEYOND_USE}){bud:%y%m%d%H%M}({AI_CASE}){code.case_id}"
        f"({AI_DOSE})C{code.cycle}D{code.dose_in_cycle}"
    )
    text += _text_field(AI_DRUG, "drug", code.drug)
    for ai, number in (
        (AI_DOSE_IU, code.dose_iu),
        (AI_VOLUME_ML, code.final_volume_ml),
        (AI_INFUSION_MINUTES, code.infusion_minutes),
        (AI_PUMP_RATE, code.pump_rate_ml_per_h),
    ):
        if number is not None:
            text += f"({ai}){number:f}"
    return text + _text_field(AI_ROUTE, "route", code.route)


def _text_field(ai: str, what: str, value: str | None) -> str:
    """An optional text field of the bag code in human-readable form ("" when absent)."""
    if value is None:
        return ""
    problem = gs1_text_problem(what, value)
    if problem:
        raise InputError("label", problem)
    return f"({ai}){value}"


def parse_bag_code(text: str) -> BagCode:
    """The bag label's code as a scanner typed it (FNC1 as GS or a stand-in, or the
    human-readable form); StepRefused("unreadable", field ``bag_scan``) if it is not one."""
    return _parse_bag_code(text)


# Every replay of a case re-judges its bag scans (three or four a dose), and biip's parse was a
# quarter of a step request's CPU (bench/profile_step.py). The answer depends on the text alone
# and BagCode is frozen, so one parse per distinct code is kept; a refusal (an exception) is
# not cached and is worked out again each time. Bounded: a ward has a few hundred bags open.
@lru_cache(maxsize=2048)
def _parse_bag_code(text: str) -> BagCode:
    raw = _normalised(text)
    if raw.startswith("]d2") or raw.startswith("]Q3") or raw.startswith("]C1"):
        raw = raw[3:]  # the symbology identifier some scanners send first
    if not raw:
        raise _not_a_bag("the scan is empty")
    try:
        message = GS1Message.parse_hri(raw) if raw.startswith("(") else GS1Message.parse(raw)
    except Exception as exc:  # biip's ParseError family
        raise _not_a_bag(f"not a GS1 element string ({exc})") from None
    found = {e.ai.ai: e for e in message.element_strings}
    if "01" in found and AI_CASE not in found:
        raise _not_a_bag(
            f"this is a product's code (GTIN {found['01'].value}), not a Bedside bag label"
        )
    missing = [
        name
        for ai, name in (
            (AI_CASE, "case id (91)"),
            (AI_DOSE, "dose (92)"),
            (AI_BEYOND_USE, "beyond-use time (7003)"),
        )
        if ai not in found
    ]
    if missing:
        raise _not_a_bag(f"the code has no {', '.join(missing)}")
    dose = _DOSE.match(found[AI_DOSE].value)
    if dose is None:
        raise _not_a_bag(f"dose '{found[AI_DOSE].value}' is not C<cycle>D<dose>")
    bud = found[AI_BEYOND_USE].datetime
    if bud is None:
        raise _not_a_bag(f"beyond-use time '{found[AI_BEYOND_USE].value}' is not a time")
    case_id = found[AI_CASE].value
    if GROUP_SEPARATOR in case_id or not case_id.isprintable():
        raise _not_a_bag("the case id runs into another field (a group separator is missing)")
    return BagCode(
        case_id=case_id,
        cycle=int(dose.group(1)),
        dose_in_cycle=int(dose.group(2)),
        use_before=bud.replace(tzinfo=UTC),
        drug=_text(found, AI_DRUG, "drug"),
        dose_iu=_number(found, AI_DOSE_IU, _WHOLE, "dose (94)"),
        final_volume_ml=_number(found, AI_VOLUME_ML, _DECIMAL, "volume (95)"),
        infusion_minutes=_number(found, AI_INFUSION_MINUTES, _DECIMAL, "infusion time (96)"),
        pump_rate_ml_per_h=_number(found, AI_PUMP_RATE, _DECIMAL, "pump rate (97)"),
        route=_text(found, AI_ROUTE, "route"),
    )


def _text(found: Mapping[str, Any], ai: str, what: str) -> str | None:
    """An optional text of the bag code (absent in codes printed before it was added)."""
    if ai not in found:
        return None
    value = str(found[ai].value)
    if GROUP_SEPARATOR in value or not value.isprintable():
        raise _not_a_bag(f"the {what} runs into another field (a group separator is missing)")
    return value


def _number(found: Mapping[str, Any], ai: str, form: re.Pattern[str], what: str) -> Decimal | None:
    """An optional number of the bag code (absent in codes printed before it was added)."""
    if ai not in found:
        return None
    value = str(found[ai].value)
    if not form.match(value):
        raise _not_a_bag(f"{what} '{value}' is not a number")
    return Decimal(value)


def _not_a_bag(why: str) -> StepRefused:
    return StepRefused("unreadable", f"bag label unreadable: {why}", field="bag_scan")


def scan_to_values(
    protocol: Protocol, prefix: str, scan_text: str, now: datetime
) -> dict[str, Any]:
    """Entry values for ``{prefix}_*`` items from one scan, for the step that records them.

    Refuses (StepRefused, field ``{prefix}_scan``) with reason ``unreadable``, ``expired`` or
    ``unknown_product``. The caller merges the values with the rest of the step's entries.
    """
    step = _step(protocol, prefix)
    scan = parse_scan(scan_text)
    end = datetime.combine(scan.expiry + timedelta(days=1), time(0, 0), tzinfo=UTC)
    if end <= now:
        raise StepRefused(
            "expired",
            f"{prefix}: lot {scan.lot} expired {scan.expiry.isoformat()}; an expired product "
            "cannot be used",
            field=f"{prefix}_scan",
        )
    known = [p for p in protocol.formulary if p.kind == prefix]
    product = next((p for p in known if p.gtin == scan.gtin), None)
    if product is None:
        listed = ", ".join(p.gtin for p in known) or "none: the institution lists none"
        raise StepRefused(
            "unknown_product",
            f"{prefix}: GTIN {scan.gtin} is not a product the formulary lists for this item "
            f"(listed: {listed})",
            field=f"{prefix}_scan",
        )
    values: dict[str, Any] = {
        f"{prefix}_lot": scan.lot,
        f"{prefix}_expiry": scan.expiry.isoformat(),
    }
    _put(step, values, f"{prefix}_gtin", scan.gtin)
    _put(step, values, f"{prefix}_entry", "scanned")
    _put(step, values, f"{prefix}_scan", stored_form(scan_text))
    return values


def _scans_of(step: Step, values: Mapping[str, Any]) -> list[str]:
    """The prefixes whose entry on this step says "scanned", on a protocol that keeps scans."""
    return [
        scan.kind
        for scan in step.scans
        if values.get(f"{scan.kind}_entry") == "scanned"
        and step.item(f"{scan.kind}_scan") is not None
    ]


def _read_scan(protocol: Protocol, prefix: str, code: str, at: datetime) -> dict[str, Any]:
    try:
        return scan_to_values(protocol, prefix, code, at)
    except StepRefused as exc:  # name the scan field of this item, not a generic "scan"
        raise StepRefused(exc.reason, exc.message, field=f"{prefix}_scan") from None


def complete_from_scans(
    protocol: Protocol, step: Step, values: Mapping[str, Any], at: datetime
) -> dict[str, Any]:
    """Fill what a scanned entry left blank (GTIN, lot, expiry) from its scan, so a form
    without script needs only "scanned" and the scanner's code. What was typed stays, and
    ``check_scanned_entries`` then holds it to the scan."""
    out = dict(values)
    for prefix in _scans_of(step, values):
        code = values.get(f"{prefix}_scan")
        if not isinstance(code, str) or not code.strip():
            continue  # required_if refuses it, naming the item
        for item_id, value in _read_scan(protocol, prefix, code, at).items():
            blank = out.get(item_id) is None or (
                isinstance(out[item_id], str) and not out[item_id].strip()
            )
            if blank:
                out[item_id] = value
    return out


def check_scanned_entries(
    protocol: Protocol, step: Step, typed: Mapping[str, Any], at: datetime
) -> None:
    """An entry marked "scanned" must carry the scan it came from, and that scan must be
    readable, unexpired at ``at``, a product the formulary lists, and say what the entry says
    (GTIN, lot, expiry). Otherwise "scanned" could be claimed for a value typed in by hand,
    and the workaround would hide from the scan-failure report (issue 7)."""
    for prefix in _scans_of(step, typed):
        code = typed.get(f"{prefix}_scan")
        if not isinstance(code, str):
            raise StepRefused(
                "missing_item",
                f"{prefix}_scan: a scanned entry needs its scan",
                field=f"{prefix}_scan",
            )
        from_scan = _read_scan(protocol, prefix, code, at)
        for item_id, value in from_scan.items():
            if item_id in (f"{prefix}_entry", f"{prefix}_scan"):
                continue
            item = step.item(item_id)
            if item is None:
                continue
            entered = typed.get(item_id)
            expected = from_stored(item, value)
            shown = to_stored(item, entered) if entered is not None else "nothing"
            if entered != expected:
                raise StepRefused(
                    "scan_mismatch",
                    f"{item_id}: entered {shown}, but the scanned code says {value}; "
                    "scan again, or type the values in with a reason",
                    field=item_id,
                )


def typed_values(
    protocol: Protocol,
    prefix: str,
    *,
    lot: str,
    expiry: str,
    reason: str,
    gtin: str | None = None,
) -> dict[str, Any]:
    """Values typed by hand after a failed scan; the reason code is required and recorded."""
    step = _step(protocol, prefix)
    reason_item = step.item(f"{prefix}_typed_reason")
    allowed = reason_item.option_ids() if reason_item is not None else TYPED_REASONS
    if reason not in allowed:
        raise InputError(
            f"{prefix}_typed_reason", f"'{reason}' is not a reason", ", ".join(allowed)
        )
    values: dict[str, Any] = {f"{prefix}_lot": lot, f"{prefix}_expiry": expiry}
    if gtin:
        _put(step, values, f"{prefix}_gtin", gtin)
    _put(step, values, f"{prefix}_entry", "typed")
    _put(step, values, f"{prefix}_typed_reason", reason)
    return values


def _step(protocol: Protocol, prefix: str) -> Step:
    steps = protocol.scan_steps()
    if prefix not in steps:
        # "item" is what the CLI (--item) and the API body call the scanned kind.
        raise InputError("item", f"'{prefix}' is not a scanned item", ", ".join(steps))
    return protocol.step(steps[prefix])


def _put(step: Step, values: dict[str, Any], item_id: str, value: str) -> None:
    # Only items this protocol has: an older protocol without e.g. d5w_entry still works.
    if step.item(item_id) is not None:
        values[item_id] = value


def _unreadable(why: str) -> StepRefused:
    return StepRefused("unreadable", f"barcode unreadable: {why}", field="scan")
