"""A FHIR R4 MedicationRequest (with its Patient) read into an OrderMessage, and the
OperationOutcome that answers it.

Accepted shapes: a Bundle (transaction or collection) holding the MedicationRequest, its
Patient, the body-weight Observation and the requesting Practitioner (references by fullUrl or
``Type/id``); or a lone MedicationRequest with them ``contained`` (references ``#id``). The
order control comes from ``status`` (active: new, or a change when the Bundle entry is a PUT;
stopped: discontinue; cancelled / entered-in-error: cancel); the dose from
``dosageInstruction[0].doseAndRate[0].doseQuantity`` (per kg), the start from its
``timing.event[0]``; the weight from the Observation (LOINC 29463-7 or 3141-9, kg, with
``effectiveDateTime`` and ``method``, the weight source); the MRN from the Patient identifier of
type MR. Anything missing or malformed is an InputError naming the FHIR path.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

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

STATUSES = {"active": NEW, "stopped": DISCONTINUE, "cancelled": CANCEL, "entered-in-error": CANCEL}
MR = "MR"  # HL7 v2 table 0203: medical record number


def parse_medication_request(body: Any, site_tz: tzinfo = UTC) -> OrderMessage:
    """Read a Bundle or a MedicationRequest with contained resources."""
    if not isinstance(body, dict):
        raise InputError("resourceType", "the body is not a FHIR resource (a JSON object)")
    kind = body.get("resourceType")
    method = "POST"
    if kind == "Bundle":
        resources, method, request = _bundle(body)
        control_id = _text(body.get("identifier", {}).get("value")) or _text(body.get("id"))
        if not control_id:
            raise InputError("Bundle.identifier", "the Bundle needs an identifier or an id")
    elif kind == "MedicationRequest":
        request = body
        resources = {f"#{r.get('id')}": r for r in _list(body, "contained") if isinstance(r, dict)}
        control_id = _text(body.get("id"))
        version = _text(body.get("meta", {}).get("versionId"))
        if not control_id:
            raise InputError("MedicationRequest.id", "the MedicationRequest needs an id")
        control_id = f"{control_id}/{version}" if version else control_id
    else:
        raise InputError("resourceType", f"{kind!r} is not an order", "Bundle, MedicationRequest")
    status = _text(request.get("status"))
    if status not in STATUSES:
        raise InputError(
            "MedicationRequest.status", f"{status or '(empty)'} is not handled", ", ".join(STATUSES)
        )
    if _text(request.get("intent")) not in ("order", "original-order", "instance-order"):
        raise InputError("MedicationRequest.intent", "only an order is applied", "order")
    control = STATUSES[status]
    if control == NEW and method == "PUT":
        control = CHANGE
    placer = _placer(request)
    patient = _patient(
        _resolve(resources, request.get("subject"), "MedicationRequest.subject", "Patient")
    )
    orderer = _orderer(resources, request.get("requester"))
    priority = STAT if _text(request.get("priority")) in ("stat", "asap", "urgent") else ROUTINE
    reason = _concept_text(request.get("statusReason"))
    dose = _dose(resources, request, site_tz) if control in (NEW, CHANGE) else None
    return OrderMessage(
        channel="fhir",
        control_id=control_id[:200],
        kind=f"MedicationRequest {status}",
        control=control,
        placer_order=placer,
        patient=patient,
        orderer=orderer,
        priority=priority,
        dose=dose,
        reason=reason,
    )


def operation_outcome(severity: str, code: str, text: str) -> dict[str, Any]:
    """An OperationOutcome with one issue (``severity`` information / error, ``code`` from
    the FHIR issue-type value set: informational, invalid, business-rule, security...)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": text}],
    }


# --- reading ------------------------------------------------------------------------------


def _bundle(body: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = {}
    request: dict[str, Any] | None = None
    method = "POST"
    for n, entry in enumerate(_list(body, "entry")):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise InputError(f"Bundle.entry[{n}].resource", "each entry needs a resource")
        rtype, rid = _text(resource.get("resourceType")), _text(resource.get("id"))
        if entry.get("fullUrl"):
            resources[_text(entry["fullUrl"])] = resource
        if rid:
            resources[f"{rtype}/{rid}"] = resource
        if rtype == "MedicationRequest":
            if request is not None:
                raise InputError("Bundle.entry", "one MedicationRequest per Bundle")
            request = resource
            method = _text((entry.get("request") or {}).get("method")) or "POST"
    if request is None:
        raise InputError("Bundle.entry", "the Bundle holds no MedicationRequest")
    for r in _list(request, "contained"):
        if isinstance(r, dict):
            resources[f"#{r.get('id')}"] = r
    return resources, method.upper(), request


def _resolve(
    resources: dict[str, dict[str, Any]], ref: Any, path: str, rtype: str
) -> dict[str, Any]:
    key = _text((ref or {}).get("reference")) if isinstance(ref, dict) else ""
    found = resources.get(key)
    if found is None or found.get("resourceType") != rtype:
        raise InputError(
            path, f"must reference a {rtype} in the Bundle or contained ({key or 'none'})"
        )
    return found


def _placer(request: dict[str, Any]) -> str:
    ids = [i for i in _list(request, "identifier") if isinstance(i, dict) and i.get("value")]
    ids.sort(key=lambda i: i.get("use") != "official")
    if not ids:
        raise InputError("MedicationRequest.identifier", "the order number is missing")
    return _text(ids[0]["value"])[:64]


def _patient(resource: dict[str, Any]) -> OrderPatient:
    mrn = ""
    for ident in _list(resource, "identifier"):
        codes = [_text(c.get("code")) for c in _list(ident.get("type") or {}, "coding")]
        if MR in codes and ident.get("value"):
            mrn = _text(ident["value"])
            break
    if not mrn:
        raise InputError(
            "Patient.identifier", "no medical record number (an identifier of type MR)"
        )
    names = _list(resource, "name")
    name = names[0] if names and isinstance(names[0], dict) else {}
    family = _text(name.get("family"))
    given = _text((name.get("given") or [""])[0])
    if not family or not given:
        raise InputError("Patient.name", "the patient's family and given names are both required")
    try:
        born = date.fromisoformat(_text(resource.get("birthDate")))
    except ValueError:
        raise InputError("Patient.birthDate", "is not a date", "YYYY-MM-DD") from None
    return OrderPatient(mrn, family, given, born)


def _orderer(resources: dict[str, dict[str, Any]], ref: Any) -> Orderer:
    if not isinstance(ref, dict):
        raise InputError("MedicationRequest.requester", "the ordering provider is not named")
    practitioner = resources.get(_text(ref.get("reference")))
    if practitioner is not None:
        ids = [i for i in _list(practitioner, "identifier") if isinstance(i, dict)]
        names = _list(practitioner, "name")
        name = names[0] if names and isinstance(names[0], dict) else {}
        ident = _text(ids[0].get("value")) if ids else _text(practitioner.get("id"))
        if ident:
            given = _text((name.get("given") or [""])[0])
            return Orderer(ident, _text(name.get("family")), given)
    ident = _text((ref.get("identifier") or {}).get("value"))
    if not ident:
        raise InputError("MedicationRequest.requester", "the ordering provider has no identifier")
    return Orderer(ident, _text(ref.get("display")), "")


def _dose(
    resources: dict[str, dict[str, Any]], request: dict[str, Any], site_tz: tzinfo
) -> OrderDose:
    concept = request.get("medicationCodeableConcept") or {}
    names = [_text(c.get(k)) for c in _list(concept, "coding") for k in ("code", "display")]
    names.append(_text(concept.get("text")))
    drug = " / ".join(n for n in names if n)
    dosage = (_list(request, "dosageInstruction") or [{}])[0]
    rate = (_list(dosage, "doseAndRate") or [{}])[0]
    quantity = rate.get("doseQuantity") or {}
    path = "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity"
    units = _text(quantity.get("code")) or _text(quantity.get("unit"))
    if units not in DOSE_UNITS:
        raise InputError(
            f"{path}.code", f"{units or '(empty)'} is not a dose per kg", ", ".join(DOSE_UNITS)
        )
    amount = _decimal(quantity.get("value"), f"{path}.value")
    events = _list(dosage.get("timing") or {}, "event")
    start = _datetime(
        events[0] if events else "",
        "MedicationRequest.dosageInstruction[0].timing.event[0]",
        site_tz,
    )
    weight = _weight(resources, request, site_tz)
    notes = [_text(a.get("text")) for a in _list(dosage, "additionalInstruction")]
    return OrderDose(
        drug=drug,
        dose_iu_per_kg=amount,
        weight_kg=weight[0],
        weight_source=weight[2],
        weight_measured_at=weight[1],
        scheduled_at=start,
        deviation_reason=next((n for n in notes if n), ""),
    )


def _weight(
    resources: dict[str, dict[str, Any]], request: dict[str, Any], site_tz: tzinfo
) -> tuple[Decimal, datetime, str]:
    for ref in _list(request, "supportingInformation"):
        obs = resources.get(_text((ref or {}).get("reference")))
        if obs is None or obs.get("resourceType") != "Observation":
            continue
        codes = [_text(c.get("code")) for c in _list(obs.get("code") or {}, "coding")]
        if not set(codes) & set(WEIGHT_CODES):
            continue
        value = obs.get("valueQuantity") or {}
        unit = _text(value.get("code")) or _text(value.get("unit"))
        if unit != "kg":
            raise InputError(
                "Observation.valueQuantity.code", f"{unit or '(empty)'} is not kilograms", "kg"
            )
        weight = _decimal(value.get("value"), "Observation.valueQuantity.value")
        at = _datetime(obs.get("effectiveDateTime"), "Observation.effectiveDateTime", site_tz)
        method = obs.get("method") or {}
        source = next((_text(c.get("code")) for c in _list(method, "coding")), "") or _text(
            method.get("text")
        )
        if not source:
            raise InputError("Observation.method", "where the weight comes from is missing")
        return weight, at, source
    raise InputError(
        "MedicationRequest.supportingInformation",
        f"no body weight Observation (LOINC {' or '.join(WEIGHT_CODES)})",
    )


def _list(resource: Any, key: str) -> list[Any]:
    value = resource.get(key) if isinstance(resource, dict) else None
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _concept_text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    return _text(concept.get("text")) or next(
        (_text(c.get("display")) for c in _list(concept, "coding") if c.get("display")), ""
    )


def _decimal(value: Any, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(path, "is not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InputError(path, f"{value!r} is not a number") from None
    if not number.is_finite():
        raise InputError(path, f"{value!r} is not a number")
    return number


def _datetime(value: Any, path: str, site_tz: tzinfo) -> datetime:
    try:
        parsed = datetime.fromisoformat(_text(value))
    except ValueError:
        raise InputError(
            path, f"{value!r} is not a date and time", "YYYY-MM-DDThh:mm:ss[+zz:zz]"
        ) from None
    if "T" not in _text(value):
        raise InputError(path, "needs a time of day", "YYYY-MM-DDThh:mm:ss[+zz:zz]")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=site_tz)
    return parsed.astimezone(UTC)
