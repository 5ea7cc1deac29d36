"""HL7 v2 pharmacy orders (RDE^O11, ORM^O01) read into an OrderMessage, and their ACKs.

The hospital's feed sends one order per message: MSH, PID (MRN in PID-3, the one whose
identifier type is MR; name PID-5; date of birth PID-7), ORC (ORC-1 order control NW / XO / DC /
CA, ORC-2 placer order number, ORC-7 quantity/timing with the start time and priority, ORC-12
ordering provider, ORC-16 reason), TQ1 (start time TQ1-7, priority TQ1-9), RXE (RDE: give code
RXE-2, amount RXE-3, units RXE-5, administration instructions RXE-7) or RXO (ORM: RXO-1, RXO-2,
RXO-4, RXO-7), and an OBX with the body weight (LOINC 29463-7 or 3141-9: value OBX-5, units
OBX-6, measured OBX-14, method OBX-17). Escapes (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\) are undone by
python-hl7; repeated fields (~) are searched; Z-segments are ignored.

Anything unreadable is an InputError naming the HL7 field (e.g. ``PID-7``) and what it allows;
the listener answers it with an AR (message rejected) naming the reason.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

import hl7

from workflow.core.errors import InputError
from workflow.core.order_message import (
    CANCEL,
    CHANGE,
    DISCONTINUE,
    DOSE_UNITS,
    NEW,
    ROUTINE,
    STAT,
    WEIGHT_CODES,
    OrderDose,
    Orderer,
    OrderMessage,
    OrderPatient,
)

ORDER_CONTROLS = {"NW": NEW, "XO": CHANGE, "DC": DISCONTINUE, "CA": CANCEL}
MESSAGE_TYPES = ("RDE^O11", "ORM^O01")
# HL7 table 0027 priority: S = STAT, A = ASAP (both go to the front), R = routine, and others.
STAT_CODES = ("S", "A")

_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?([+-]\d{4})?$")


def parse_order(text: str, site_tz: tzinfo = UTC) -> OrderMessage:
    """Read one HL7 v2 order message (segments separated by CR). Times without an offset are
    the site's local time (``site_tz``)."""
    msg = parse_message(text)
    kind = message_kind(msg)
    if kind not in MESSAGE_TYPES:
        raise InputError(
            "MSH-9", f"message type {kind} is not a pharmacy order", ", ".join(MESSAGE_TYPES)
        )
    control_id = _field(msg, "MSH", 10)
    if not control_id:
        raise InputError("MSH-10", "the message control id is empty")
    orc = _segment(msg, "ORC")
    code = _get(orc, 1).upper()
    if code not in ORDER_CONTROLS:
        raise InputError(
            "ORC-1", f"order control {code or '(empty)'} is not handled", ", ".join(ORDER_CONTROLS)
        )
    control = ORDER_CONTROLS[code]
    placer = _get(orc, 2)
    if not placer:
        raise InputError("ORC-2", "the placer order number is empty")
    reason = _get(orc, 16, component=2) or _get(orc, 16)
    dose = _dose(msg, kind, site_tz) if control in (NEW, CHANGE) else None
    return OrderMessage(
        channel="hl7",
        control_id=control_id,
        kind=f"{kind} {code}",
        control=control,
        placer_order=placer,
        patient=_patient(msg),
        orderer=_orderer(orc),
        priority=_priority(msg, orc),
        dose=dose,
        reason=reason,
        raw=text,
    )


def parse_message(text: str) -> Any:
    """The python-hl7 message, or InputError when the text is not an HL7 v2 message."""
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    if not text.startswith("MSH") or len(text) < 8:
        raise InputError("MSH", "the message does not begin with an MSH segment")
    try:
        return hl7.parse(text)
    except Exception as exc:  # python-hl7 raises plain exceptions on broken delimiters
        raise InputError("MSH", f"not a readable HL7 v2 message ({exc})") from None


def message_kind(msg: Any) -> str:
    return f"{_field(msg, 'MSH', 9, component=1)}^{_field(msg, 'MSH', 9, component=2)}"


def control_id_of(text: str) -> str | None:
    """MSH-10 of a message that may not parse any further (for the log and the NAK)."""
    try:
        return _field(parse_message(text), "MSH", 10) or None
    except (InputError, IndexError, KeyError):
        return None


def ack(text: str, code: str, detail: str, control_id: str) -> str:
    """The acknowledgement for ``text``: MSA-1 ``code`` (AA, AE or AR), MSA-2 its control id,
    MSA-3 ``detail`` (escaped); an AE/AR also carries ERR-8 with the same words. The MSH is
    python-hl7's reply header (sender and receiver swapped); a message too broken for that gets
    one built here."""
    escaped = _escape(detail[:300])
    try:
        msg = parse_message(text)
        reply = msg.create_ack(code, message_id=f"ACK{control_id}"[:20], application="BEDSIDE")
        header = str(reply.segment("MSH"))
    except Exception:  # the answer must go out whatever came in
        now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        header = f"MSH|^~\\&|BEDSIDE||||{now}||ACK|ACK{now}|P|2.5.1"
    segments = [header, f"MSA|{code}|{_escape(control_id)}|{escaped}"]
    if code != "AA":
        segments.append(f"ERR||||E||||{escaped}")
    return "\r".join(segments)


def _escape(value: str) -> str:
    return (
        value.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
        .replace("\r", " ")
    )


# --- segments ------------------------------------------------------------------------------


def _segment(msg: Any, name: str) -> Any:
    try:
        return msg.segment(name)
    except KeyError:
        raise InputError(name, f"the message has no {name} segment") from None


def _segments(msg: Any, name: str) -> list[Any]:
    try:
        return list(msg.segments(name))
    except KeyError:
        return []


def _get(seg: Any, field: int, repeat: int = 1, component: int = 1, sub: int = 1) -> str:
    try:
        return str(seg.extract_field(1, field, repeat, component, sub)).strip()
    except IndexError:
        return ""


def _field(msg: Any, seg: str, field: int, component: int = 1) -> str:
    return _get(_segment(msg, seg), field, component=component)


def _repeats(seg: Any, field: int) -> int:
    try:
        value = seg(field)
    except IndexError:
        return 0
    return (
        len(value)
        if isinstance(value, hl7.Field) and value and isinstance(value[0], hl7.Repetition)
        else 1
    )


def _patient(msg: Any) -> OrderPatient:
    pid = _segment(msg, "PID")
    mrn = ""
    for n in range(1, _repeats(pid, 3) + 1):
        if _get(pid, 3, n, 5).upper() == "MR":
            mrn = _get(pid, 3, n, 1)
            break
    if not mrn:
        raise InputError("PID-3", "no medical record number (an identifier of type MR)")
    family, given = _get(pid, 5, 1, 1), _get(pid, 5, 1, 2)
    if not family or not given:
        raise InputError("PID-5", "the patient's family and given names are both required")
    born = _get(pid, 7)
    try:
        dob = date(int(born[0:4]), int(born[4:6]), int(born[6:8]))
    except (ValueError, IndexError):
        raise InputError(
            "PID-7", f"date of birth {born or '(empty)'} is not a date", "YYYYMMDD"
        ) from None
    return OrderPatient(mrn, family, given, dob)


def _orderer(orc: Any) -> Orderer:
    ident = _get(orc, 12, 1, 1)
    if not ident:
        raise InputError("ORC-12", "the ordering provider is not named")
    return Orderer(ident, _get(orc, 12, 1, 2), _get(orc, 12, 1, 3))


def _priority(msg: Any, orc: Any) -> str:
    codes = [_get(orc, 7, 1, 6)] + [_get(tq1, 9) for tq1 in _segments(msg, "TQ1")]
    return STAT if any(c.upper() in STAT_CODES for c in codes if c) else ROUTINE


def _dose(msg: Any, kind: str, site_tz: tzinfo) -> OrderDose:
    if kind == "RDE^O11":
        seg, name = _segment(msg, "RXE"), "RXE"
        code_f, amount_f, units_f, note_f = 2, 3, 5, 7
    else:
        seg, name = _segment(msg, "RXO"), "RXO"
        code_f, amount_f, units_f, note_f = 1, 2, 4, 7
    codes = (_get(seg, code_f, 1, 1), _get(seg, code_f, 1, 2))
    amount = _decimal(_get(seg, amount_f), f"{name}-{amount_f}", "the ordered dose")
    units = _get(seg, units_f, 1, 1) or _get(seg, units_f, 1, 2)
    if units not in DOSE_UNITS:
        raise InputError(
            f"{name}-{units_f}",
            f"dose units {units or '(empty)'} are not a dose per kg",
            ", ".join(DOSE_UNITS),
        )
    weight, measured, method = _weight(msg, site_tz)
    orc = _segment(msg, "ORC")
    start = _get(orc, 7, 1, 4)
    for tq1 in _segments(msg, "TQ1"):
        start = _get(tq1, 7) or start
    if not start:
        raise InputError("TQ1-7", "the start time of the dose is missing (TQ1-7 or ORC-7.4)")
    return OrderDose(
        drug=" / ".join(c for c in codes if c),
        dose_iu_per_kg=amount,
        weight_kg=weight,
        weight_source=method,
        weight_measured_at=parse_dtm(measured, "OBX-14", site_tz),
        scheduled_at=parse_dtm(start, "TQ1-7", site_tz),
        deviation_reason=_get(seg, note_f, 1, 2) or _get(seg, note_f, 1, 1),
    )


def _weight(msg: Any, site_tz: tzinfo) -> tuple[Decimal, str, str]:
    for obx in _segments(msg, "OBX"):
        if _get(obx, 3, 1, 1) not in WEIGHT_CODES:
            continue
        value = _decimal(_get(obx, 5), "OBX-5", "the body weight")
        unit = _get(obx, 6, 1, 1)
        if unit != "kg":
            raise InputError("OBX-6", f"weight units {unit or '(empty)'} are not kilograms", "kg")
        measured = _get(obx, 14)
        if not measured:
            raise InputError("OBX-14", "the time the weight was measured is missing")
        parse_dtm(measured, "OBX-14", site_tz)
        method = _get(obx, 17, 1, 1)
        if not method:
            raise InputError(
                "OBX-17", "where the weight comes from (the observation method) is missing"
            )
        return value, measured, method
    raise InputError("OBX", f"no body weight observation (OBX-3 {' or '.join(WEIGHT_CODES)})")


def _decimal(value: str, field: str, what: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise InputError(field, f"{what} {value or '(empty)'} is not a number") from None
    if not number.is_finite():
        raise InputError(field, f"{what} {value} is not a number")
    return number


def parse_dtm(value: str, field: str, site_tz: tzinfo) -> datetime:
    """An HL7 DTM (YYYYMMDDHHMM[SS[.S]][+ZZZZ]) as an aware datetime; without an offset it is
    the site's local time."""
    m = _DTM.match(value.strip())
    if m is None or m.group(4) is None:
        raise InputError(
            field, f"{value or '(empty)'} is not a date and time", "YYYYMMDDHHMM[SS][+ZZZZ]"
        )
    y, mo, d, h, mi, s, off = m.groups()
    try:
        if off:
            sign = 1 if off[0] == "+" else -1
            zone: tzinfo = timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[3:5])))
        else:
            zone = site_tz
        local = datetime(int(y), int(mo or 1), int(d or 1), int(h), int(mi or 0), int(s or 0))
        return local.replace(tzinfo=zone).astimezone(UTC)
    except ValueError:
        raise InputError(
            field, f"{value} is not a date and time", "YYYYMMDDHHMM[SS][+ZZZZ]"
        ) from None
