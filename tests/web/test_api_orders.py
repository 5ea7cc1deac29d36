"""POST /api/fhir/MedicationRequest: a FHIR R4 order with its Patient goes through the same
service command as the HL7 v2 feed; errors are OperationOutcomes with a 4xx status; the pharmacy
sees what a discontinued order did at GET /api/pharmacy/interface-events. SQLite and
PostgreSQL."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from interop.hl7_support import order

from workflow.core.errors import InputError
from workflow.core.order_message import DOSE_UNITS
from workflow.dev.demo import _SIGNERS
from workflow.dev.walk import values_for
from workflow.interop import fhir_order, hl7v2

from .conftest import PASSWORD, Site, cred, form_of
from .test_orders import ATTESTED, page_client

MRN, FAMILY, BORN = "MRN-8001", "Mbeki", "1959-09-30"


def bundle(
    status: str = "active",
    *,
    ident: str = "req-1",
    dob: str = BORN,
    drug: str = "aldesleukin",
    method: str = "POST",
    weight: float = 81.0,
    priority: str = "stat",
) -> dict[str, Any]:
    """A transaction Bundle as a hospital's FHIR server sends an IV order."""
    return {
        "resourceType": "Bundle",
        "id": ident,
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:8f1c2c4e-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "MedicationRequest",
                    "identifier": [{"use": "official", "value": "RX-77"}],
                    "status": status,
                    "statusReason": {"text": "Capillary leak syndrome"},
                    "intent": "order",
                    "priority": priority,
                    "medicationCodeableConcept": {
                        "coding": [{"code": drug, "display": drug.title()}],
                        "text": drug,
                    },
                    "subject": {"reference": "urn:uuid:8f1c2c4e-0000-4000-8000-000000000002"},
                    "requester": {"reference": "Practitioner/pr1"},
                    "supportingInformation": [{"reference": "Observation/w1"}],
                    "dosageInstruction": [
                        {
                            "timing": {"event": ["2026-11-02T08:00:00+00:00"]},
                            "doseAndRate": [
                                {
                                    "doseQuantity": {
                                        "value": 600000,
                                        "unit": "IU/kg",
                                        "code": "[iU]/kg",
                                    }
                                }
                            ],
                        }
                    ],
                },
                "request": {"method": method, "url": "MedicationRequest"},
            },
            {
                "fullUrl": "urn:uuid:8f1c2c4e-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [
                        {"type": {"coding": [{"code": "SS"}]}, "value": "555-00-1234"},
                        {
                            "type": {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                        "code": "MR",
                                    }
                                ]
                            },
                            "value": MRN,
                        },
                    ],
                    "name": [{"family": FAMILY, "given": ["Thabo"]}],
                    "birthDate": dob,
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "w1",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                    "subject": {"reference": "urn:uuid:8f1c2c4e-0000-4000-8000-000000000002"},
                    "effectiveDateTime": "2026-11-02T05:00:00+00:00",
                    "valueQuantity": {"value": weight, "unit": "kg", "code": "kg"},
                    "method": {"coding": [{"code": "bed_scale"}]},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {
                    "resourceType": "Practitioner",
                    "id": "pr1",
                    "identifier": [{"value": "dr.okafor"}],
                    "name": [{"family": "Okafor", "given": ["Amara"]}],
                },
                "request": {"method": "POST", "url": "Practitioner"},
            },
        ],
    }


def test_a_fhir_order_is_queued_and_a_stop_is_shown_to_the_pharmacy(site: Site) -> None:
    Bundle.model_validate(bundle())  # what the test sends is valid FHIR R4(B)
    site.new_course(MRN, FAMILY, "Thabo", BORN)
    prescriber = site.client("dr.okafor")
    r = prescriber.post("/api/fhir/MedicationRequest", json=bundle())
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    OperationOutcome.model_validate(r.json())
    [case] = [c for c in site.bedside.store.list_cases()]
    view = site.bedside.load(case.id)
    assert view.case.state == "order_verification"
    # A Bedside prescriber with the requester's identifier is named by their printed name.
    assert view.case.current["order"].signer.name.startswith("Dr. Amara Okafor (dr.okafor)")
    assert site.bedside.order_priorities([case.id]) == {case.id: "stat"}

    again = prescriber.post("/api/fhir/MedicationRequest", json=bundle())
    assert again.status_code == 200 and "duplicate" in again.json()["issue"][0]["diagnostics"]

    changed = prescriber.post(
        "/api/fhir/MedicationRequest", json=bundle(ident="req-2", method="PUT", weight=79.5)
    )
    assert changed.status_code == 201, changed.text
    assert (
        str(site.bedside.load(case.id).case.current["order"].values["dosing_weight_kg"]) == "79.5"
    )

    stopped = prescriber.post("/api/fhir/MedicationRequest", json=bundle("stopped", ident="req-3"))
    assert stopped.status_code == 201, stopped.text
    view = site.bedside.load(case.id)
    assert view.case.state == "cancelled"
    assert "Capillary leak syndrome" in str(view.case.end and view.case.end.get("note"))

    pharmacist = site.client("p.lindqvist")
    events = pharmacist.get("/api/pharmacy/interface-events")
    assert events.status_code == 200, events.text
    newest = events.json()[0]
    assert (newest["effect"], newest["case_id"], newest["open"]) == ("removed", case.id, False)
    assert [e["effect"] for e in events.json()] == ["removed", "requeued", "queued"]
    assert site.client("n.alvarez").get("/api/pharmacy/interface-events").status_code == 403


def test_fhir_errors_are_operation_outcomes_with_4xx(site: Site) -> None:
    site.new_course(MRN, FAMILY, "Thabo", BORN)
    prescriber = site.client("dr.okafor")

    def post(body: Any) -> tuple[int, dict[str, Any]]:
        r = prescriber.post("/api/fhir/MedicationRequest", json=body)
        OperationOutcome.model_validate(r.json())
        return r.status_code, r.json()["issue"][0]

    broken = copy.deepcopy(bundle(ident="bad-1"))
    del broken["entry"][1]["resource"]["birthDate"]
    status, issue = post(broken)
    assert (status, issue["code"]) == (400, "invalid")
    assert issue["diagnostics"].startswith("Patient.birthDate")

    status, issue = post(bundle(ident="bad-2", drug="cisplatin"))
    assert (status, issue["code"]) == (422, "business-rule")
    assert "cisplatin" in issue["diagnostics"]

    status, issue = post(bundle(ident="bad-3", dob="1959-10-01"))
    assert status == 422 and "second identifier does not match" in issue["diagnostics"]

    status, issue = post({"resourceType": "Patient"})
    assert status == 400 and issue["diagnostics"].startswith("resourceType")

    assert site.bedside.store.list_cases() == []
    assert [e.status for e in site.bedside.interface_log()] == ["refused"] * 4

    # Session, role and CSRF come first, in the API's one error shape (as on every route).
    nurse = site.client("n.alvarez")
    r = nurse.post("/api/fhir/MedicationRequest", json=bundle(ident="bad-4"))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    stranger = site.client()
    r = stranger.post("/api/fhir/MedicationRequest", json=bundle(ident="bad-5"))
    assert r.status_code == 401 and r.json()["code"] == "not_signed_in"
    assert len(site.bedside.interface_log()) == 4
    # A body past the server's limit is refused as it arrives, before it is read as FHIR.
    huge = prescriber.post(
        "/api/fhir/MedicationRequest",
        content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"content-type": "application/fhir+json"},
    )
    assert huge.status_code == 413
    assert len(site.bedside.interface_log()) == 4


def test_a_lone_medication_request_with_contained_resources(site: Site) -> None:
    """The other shape a FHIR server sends: one MedicationRequest, its Patient, weight and
    requester contained (``#id`` references), the request id as the duplicate key."""
    site.new_course(MRN, FAMILY, "Thabo", BORN)
    entries = {e["resource"]["resourceType"]: e["resource"] for e in bundle()["entry"]}
    request = dict(entries["MedicationRequest"])
    patient = {**entries["Patient"], "id": "pat"}
    weight = {**entries["Observation"], "subject": {"reference": "#pat"}}
    request.update(
        id="mr-55",
        meta={"versionId": "1"},
        contained=[patient, weight, entries["Practitioner"]],
        subject={"reference": "#pat"},
        requester={"reference": "#pr1"},
        supportingInformation=[{"reference": "#w1"}],
        priority="routine",
    )
    MedicationRequest.model_validate(request)
    pharmacist = site.client("p.lindqvist")
    r = pharmacist.post("/api/fhir/MedicationRequest", json=request)
    assert r.status_code == 201, r.text
    [case] = site.bedside.store.list_cases()
    assert site.bedside.order_priorities([case.id]) == {case.id: "routine"}
    [entry] = site.bedside.interface_log()
    assert (entry.channel, entry.control_id, entry.kind) == (
        "fhir",
        "mr-55/1",
        "MedicationRequest active",
    )
    assert '"mr-55"' in entry.message  # the request as received is kept


def test_the_queue_page_shows_what_a_stopped_order_did(sqlite_site: Site) -> None:
    """The /pharmacy page lists the doses discontinued orders removed or flagged for waste; a
    prepared dose's waste not yet recorded stands out until someone records it."""
    site = sqlite_site
    site.new_course(MRN, FAMILY, "Thabo", BORN)
    prescriber = site.client("dr.okafor")
    assert prescriber.post("/api/fhir/MedicationRequest", json=bundle()).status_code == 201
    [case] = site.bedside.store.list_cases()
    pharmacist = site.client("p.lindqvist")
    assert 'id="interface-effects"' not in pharmacist.get("/pharmacy").text  # nothing stopped
    view = site.walk_to("double_check_first", site.bedside.load(case.id))  # the bag is made
    prescriber, pharmacist = site.client("dr.okafor"), site.client("p.lindqvist")  # idle: again
    r = prescriber.post("/api/fhir/MedicationRequest", json=bundle("stopped", ident="req-9"))
    assert r.status_code == 201, r.text
    page = pharmacist.get("/pharmacy").text
    effects = page[page.index('id="interface-effects"') :]
    assert "RX-77" in effects and f'href="/cases/{case.id}"' in effects
    assert "Already prepared: flagged for waste (waste not yet recorded)" in effects
    assert 'class="tag red"' in effects
    view = site.bedside.load(case.id)
    site.bedside.side_exit(
        case.id,
        view.version,
        "waste",
        view.case.protocol.side_exits["waste"].reasons[0].id,
        "",
        cred("p.lindqvist"),
    )
    effects = pharmacist.get("/pharmacy").text.split('id="interface-effects"')[1]
    assert "Already prepared: flagged for waste" in effects and "not yet recorded" not in effects


def test_both_readers_accept_the_same_dose_units() -> None:
    """Issue 16 (orders16.4): one list of dose units, in core/order_message, for HL7 and FHIR.
    Only spellings of the international unit pass; UCUM's "U" (the enzyme unit) and HL7's
    "unt" (a bare unit) are refused by both, naming the field and the allowed units."""

    def fhir(units: str) -> dict[str, Any]:
        body = bundle()
        quantity = body["entry"][0]["resource"]["dosageInstruction"][0]["doseAndRate"][0]
        quantity["doseQuantity"].update(code=units, unit=units)
        return body

    assert DOSE_UNITS == ("IU/kg", "[iU]/kg", "[IU]/kg")
    for units in DOSE_UNITS:
        assert hl7v2.parse_order(order("U1", units=units)).dose is not None
        assert fhir_order.parse_medication_request(fhir(units)).dose is not None
    for units in ("unt/kg", "U/kg", "mg/kg"):
        with pytest.raises(InputError) as hl7_err:
            hl7v2.parse_order(order("U2", units=units))
        with pytest.raises(InputError) as fhir_err:
            fhir_order.parse_medication_request(fhir(units))
        assert hl7_err.value.field == "RXE-5"
        assert fhir_err.value.field.endswith("doseQuantity.code")
        for err in (hl7_err.value, fhir_err.value):
            assert "IU/kg, [iU]/kg, [IU]/kg" in err.message, err.message


def test_a_fhir_order_without_a_course_waits_on_the_queue_board_and_patient_page(
    site: Site,
) -> None:
    """Issue 16 (orders16.1) on the web: a patient unknown to Bedside is registered from the
    order, the order waits (who ordered it, when) on the pharmacy queue, the ward board, the
    patient's page and the JSON API; the prescriber's course start on the patient page opens
    its dose for the pharmacist's verification."""
    pharmacist = site.client("p.lindqvist")
    r = pharmacist.post("/api/fhir/MedicationRequest", json=bundle(ident="wait-1"))
    assert r.status_code == 201, r.text
    assert "waiting for a prescriber to start the course" in r.json()["issue"][0]["diagnostics"]
    patient = site.bedside.store.find_patient_by_mrn(MRN)
    assert patient is not None and patient.family_name == FAMILY
    assert site.bedside.store.list_cases() == []

    [listed] = pharmacist.get("/api/pending-orders").json()
    assert (listed["placer_order"], listed["mrn"], listed["stat"]) == ("RX-77", MRN, True)
    assert "Amara Okafor" in listed["orderer"] and listed["received_local"]
    assert pharmacist.get(f"/api/pending-orders?patient_id={patient.id}").json() == [listed]
    for client, path in (
        (pharmacist, "/pharmacy"),
        (site.client("n.alvarez"), "/ward"),
        (pharmacist, f"/patients/{patient.id}"),
    ):
        page = client.get(path).text
        assert "Orders waiting for the course start" in page, path
        assert 'data-order="RX-77"' in page and listed["received_local"] in page, path
        assert "Amara Okafor" in page, path

    prescriber, token = page_client(site, "dr.okafor")
    body = {"csrf_token": token, "password": PASSWORD, **{f"a_{a}": "on" for a in ATTESTED}}
    r = prescriber.post(f"/patients/{patient.id}/courses", data=body, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert pharmacist.get("/api/pending-orders").json() == []
    assert "Orders waiting for the course start" not in pharmacist.get("/pharmacy").text
    [row] = pharmacist.get("/api/pharmacy").json()
    assert row["step"] == "Pharmacist verifies the order"
    [case] = site.bedside.store.list_cases()
    assert site.bedside.load(case.id).case.current["order"].signer.user_id == "external:dr.okafor"


def test_a_dose_stopped_after_its_bag_was_made_is_refused_on_the_web_and_the_api(
    site: Site,
) -> None:
    """Issue 16 (orders16.3): after a FHIR stop of a prepared dose, the JSON API and the web
    form refuse the next step (4xx, nothing written) with the core's words; the case page and
    GET /api/cases/{id} say so; the waste side exit stays available."""
    site.new_course(MRN, FAMILY, "Thabo", BORN)
    prescriber = site.client("dr.okafor")
    r = prescriber.post("/api/fhir/MedicationRequest", json=bundle(ident="w-1"))
    assert r.status_code == 201, r.text
    [case] = site.bedside.store.list_cases()
    view = site.bedside.load(case.id)
    steps = [s.id for s in view.case.protocol.steps]
    prepared = next(s.id for s in view.case.protocol.steps if s.sets_beyond_use)
    after = steps[steps.index(prepared) + 1]
    view = site.walk_to(after, view)
    assert view.case.bag_prepared
    site.clock.advance(minutes=5)
    prescriber = site.client("dr.okafor")  # signed in again after the walk
    r = prescriber.post("/api/fhir/MedicationRequest", json=bundle("stopped", ident="w-2"))
    assert r.status_code == 201, r.text
    view = site.bedside.load(case.id)

    signer = _SIGNERS[after]
    client = site.client(signer)
    values = values_for(view.case, after, site.clock.now())
    body = {"expected_version": view.version, "values": values, "password": PASSWORD}
    r = client.post(f"/api/cases/{case.id}/steps/{after}", json=body)
    assert 400 <= r.status_code < 500, r.text
    message = r.json()["message"]
    assert "discontinued by the hospital (DC, message w-2" in message, message
    assert "Capillary leak syndrome" in message and "the bag is to be wasted" in message

    browser, token = page_client(site, signer)
    form = {"csrf_token": token, "expected_version": str(view.version), "password": PASSWORD}
    r = browser.post(f"/cases/{case.id}/steps/{after}", data={**form, **form_of(values)})
    assert 400 <= r.status_code < 500 and "the bag is to be wasted" in r.text
    assert site.bedside.load(case.id).version == view.version  # nothing written

    shown = client.get(f"/api/cases/{case.id}").json()
    assert shown["order_stopped"] == message
    assert "ORDER DISCONTINUED" in browser.get(f"/cases/{case.id}").text

    pharmacist = site.client("p.lindqvist")
    [row] = [r for r in pharmacist.get("/api/ward").json() if r["id"] == case.id]
    assert row["order_stopped"] is True
    assert "ORDER STOPPED: WASTE THE BAG" in pharmacist.get("/ward").text
    exit_body = {
        "expected_version": view.version,
        "password": PASSWORD,
        "action": "waste",
        "reason": "dose_not_given",
    }
    r = pharmacist.post(f"/api/cases/{case.id}/exit", json=exit_body)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "wasted"
