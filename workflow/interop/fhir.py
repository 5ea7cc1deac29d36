"""FHIR R4 export: each dose as a MedicationAdministration, each signature as a Provenance.

Built only from the replayed case (its events), as plain JSON dicts; the tests validate them
with fhir.resources (its R4B models: MedicationAdministration and Provenance are the same as
R4's for every element used here). Nothing clinical is computed here: the dose and pump rate are
the case's own plan, the status follows from how the case ended.

Status: ``completed`` (infusion stopped as completed), ``stopped`` (started, then stopped early
or the case ended during the infusion), ``in-progress`` (infusing, or the dose still being
prepared: effective is then the time the case opened), ``on-hold`` (a rule holds it; the rules
are the statusReason), ``not-done`` (cancelled, wasted or discontinued before the infusion; the
reason and any hold rules are the statusReason), ``entered-in-error`` (cancelled as an order
entered in error).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from workflow.core.events import Event, format_time
from workflow.core.machine import Case, Entry
from workflow.core.rules import Firing

UCUM = "http://unitsofmeasure.org"
PERFORM_FUNCTION = "http://terminology.hl7.org/CodeSystem/med-admin-perform-function"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
SIGNATURE_TYPE = "urn:iso-astm:E1762-95:2013"
# Part 11 meaning -> ASTM E1762 signature purpose (FHIR signature-type value set).
_SIGNATURE_PURPOSE = {
    "performed": ("1.2.840.10065.1.12.1.1", "Author's Signature"),
    "approved": ("1.2.840.10065.1.12.1.1", "Author's Signature"),
    "verified": ("1.2.840.10065.1.12.1.5", "Verification Signature"),
    "reviewed": ("1.2.840.10065.1.12.1.13", "Review Signature"),
}
_PARTICIPANT = {"performed": "performer", "approved": "author", "verified": "verifier"}
SYSTEM_CASE = "urn:bedside:case"
SYSTEM_CHAIN = "urn:bedside:case-chain-sha256"
SYSTEM_EVENT = "urn:bedside:event-sha256"
SYSTEM_MRN = "urn:bedside:mrn"
SYSTEM_RULE = "urn:bedside:rule"


def number(value: Decimal) -> int | float:
    """A plain JSON number, at most 4 decimals (Decimal arithmetic stays in the core)."""
    q = value.quantize(Decimal("0.0001")).normalize()
    return int(q) if q == q.to_integral_value() else float(q)


def administration_status(case: Case) -> str:
    end = case.end or {}
    if case.state == "cancelled" and end.get("reason") == "order_error":
        return "entered-in-error"
    if case.on_hold:
        return "on-hold"
    if case.given_at is not None:
        if case.stopped_at is None:
            return "stopped" if case.closed else "in-progress"
        stop = next((e for e in case.current.values() if _stops(case, e)), None)
        outcome = stop.values.get("outcome") if stop is not None else None
        return "stopped" if outcome == "stopped_early" else "completed"
    return "not-done" if case.closed else "in-progress"


def medication_administration(case: Case, chain_hash: str | None = None) -> dict[str, Any]:
    status = administration_status(case)
    p = case.protocol
    out: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": case.case_id,
        "identifier": [{"system": SYSTEM_CASE, "value": case.case_id}],
        "status": status,
        "medicationCodeableConcept": {"text": f"{p.drug} ({p.brand})"},
        "subject": _subject(case),
        "context": {"reference": f"EpisodeOfCare/{case.course_id}", "display": "treatment course"},
        "note": [{"text": _protocol_note(case)}],
    }
    if chain_hash:
        out["identifier"].append({"system": SYSTEM_CHAIN, "value": chain_hash})
    reasons = _status_reasons(case, status)
    if reasons:
        out["statusReason"] = reasons
    if case.given_at is not None:
        period = {"start": format_time(case.given_at)}
        end_at = case.stopped_at or _end_time(case)
        if end_at is not None:
            period["end"] = format_time(end_at)
        out["effectivePeriod"] = period
    else:
        out["effectiveDateTime"] = format_time(_end_time(case) or case.events[0].at)
    performers = _performers(case)
    if performers:
        out["performer"] = performers
    plan = case.plan
    if plan is not None:
        out["dosage"] = {
            "text": f"{plan.dose_iu} IU in {number(plan.final_volume_ml)} mL over "
            f"{number(plan.infusion_minutes)} min",
            # The protocol's word for the route; a text from before ``words`` has none.
            **({"route": {"text": route}} if (route := case.protocol.say("route")) else {}),
            "dose": {"value": number(plan.dose_iu), "unit": "IU", "system": UCUM, "code": "[iU]"},
            "rateQuantity": {
                "value": number(plan.pump_rate_ml_per_h),
                "unit": "mL/h",
                "system": UCUM,
                "code": "mL/h",
            },
        }
    for flag in case.flags:
        out["note"].append({"text": f"{flag.code}: {flag.message}"})
    return out


def provenances(case: Case) -> list[dict[str, Any]]:
    """One Provenance per Part 11 signature in the case's events."""
    return [_provenance(case, e) for e in case.events if e.meaning and e.actor is not None]


def case_resources(case: Case, chain_hash: str | None = None) -> list[dict[str, Any]]:
    return [medication_administration(case, chain_hash), *provenances(case)]


def bundle(resources: Iterable[dict[str, Any]], at: datetime) -> dict[str, Any]:
    """A collection Bundle of already-built resources."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": format_time(at),
        "entry": [
            {"fullUrl": f"urn:bedside:{r['resourceType']}/{r['id']}", "resource": r}
            for r in resources
        ],
    }


# -- parts ---------------------------------------------------------------------------------------
def _subject(case: Case) -> dict[str, Any]:
    patient = case.patient
    if patient is None:  # never: case_opened always names the patient
        return {"display": "unknown patient"}
    return {
        "reference": f"Patient/{patient.patient_id}",
        "identifier": {"system": SYSTEM_MRN, "value": patient.mrn},
        "display": patient.name,
    }


def _protocol_note(case: Case) -> str:
    p = case.protocol
    text = f"Protocol {p.name}, version {p.version}, sha256 {p.file_hash}"
    if p.overlay is not None:
        text += (
            f"; institution overlay {p.overlay.name}, version {p.overlay.version}, "
            f"sha256 {p.overlay.content_hash}; combination sha256 {p.content_hash}"
        )
    return text


def _rule_reason(f: Firing) -> dict[str, Any]:
    return {"coding": [{"system": SYSTEM_RULE, "code": f.rule_id}], "text": f.describe()}


def _status_reasons(case: Case, status: str) -> list[dict[str, Any]]:
    if status == "on-hold":
        return [_rule_reason(f) for f in case.active_holds]
    if status not in ("not-done", "stopped", "entered-in-error"):
        return []
    reasons: list[dict[str, Any]] = []
    seen: set[str] = set()
    for h in case.hold_log:
        if h.get("kind") not in ("held", "discontinued"):
            continue
        for data in h.get("firings", []):
            f = Firing.from_json(data)
            if f.rule_id not in seen:
                seen.add(f.rule_id)
                reasons.append(_rule_reason(f))
    end = case.end or {}
    if end.get("reason") and end.get("reason") != "rule":
        note = f": {end['note']}" if end.get("note") else ""
        reasons.append(
            {
                "coding": [{"system": "urn:bedside:end-reason", "code": str(end["reason"])}],
                "text": f"{end['state']} ({end['reason']}){note}",
            }
        )
    return reasons


def _end_time(case: Case) -> datetime | None:
    end = case.end or {}
    if case.closed and end.get("at"):
        return datetime.fromisoformat(str(end["at"]).replace("Z", "+00:00"))
    return None


def _stops(case: Case, entry: Entry) -> bool:
    return case.protocol.step(entry.step).stops_infusion


def _practitioner(user_id: str, name: str) -> dict[str, str]:
    return {"reference": f"Practitioner/{_fhir_id(user_id)}", "display": name}


def _fhir_id(text: str) -> str:
    # FHIR ids: [A-Za-z0-9-.]{1,64}; user names may hold other characters.
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "-.") else "-" for c in text)
    return cleaned[:64] or "unknown"


def _performers(case: Case) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(function: str, entry: Entry | None) -> None:
        if entry is None or (function, entry.signer.user_id) in seen:
            return
        seen.add((function, entry.signer.user_id))
        out.append(
            {
                "function": {
                    "coding": [{"system": PERFORM_FUNCTION, "code": function}],
                    "text": function,
                },
                "actor": _practitioner(entry.signer.user_id, entry.signer.name),
            }
        )

    for step in case.protocol.steps:
        entry = case.current.get(step.id)
        if step.starts_infusion or step.stops_infusion:
            add("performer", entry)
    for step in case.protocol.steps:
        if step.blinded_against:  # the independent second checker verifies the dose
            add("verifier", case.current.get(step.id))
    return out


def _provenance(case: Case, event: Event) -> dict[str, Any]:
    assert event.actor is not None and event.meaning is not None
    code, display = _SIGNATURE_PURPOSE.get(event.meaning, _SIGNATURE_PURPOSE["performed"])
    who = _practitioner(event.actor.user_id, event.actor.name)
    what = event.step or event.type
    if event.step in case.protocol.step_ids():
        what = case.protocol.step(event.step).title
    return {
        "resourceType": "Provenance",
        "id": f"{case.case_id}-{event.seq}",
        "target": [{"reference": f"MedicationAdministration/{case.case_id}"}],
        "occurredDateTime": format_time(event.at),
        "recorded": format_time(event.at),
        "activity": {"text": f"{what} ({event.meaning}, 21 CFR 11.50)"},
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": PARTICIPANT_TYPE,
                            "code": _PARTICIPANT.get(event.meaning, "attester"),
                        }
                    ]
                },
                "role": [{"text": event.actor.role}],
                "who": who,
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {
                        "system": SYSTEM_EVENT,
                        "value": event.content_hash(),
                    },
                    "display": f"case {case.case_id} event {event.seq}",
                },
            }
        ],
        "signature": [
            {
                "type": [{"system": SIGNATURE_TYPE, "code": code, "display": display}],
                "when": format_time(event.at),
                "who": who,
            }
        ],
    }
