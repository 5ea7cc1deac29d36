"""The web with the records writer on, as `bedside serve` runs it: the sign-off's confirmation
says its records are being made, the case page shows "records being made" (a plain "Check
again" link, and a status the page's script polls) until the links are there, or "ended
without records" when the writer failed; the JSON API says pending / archived / failed. Real
store, real signing (the writer is started by hand, so the pending state is seen)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from workflow.dev.walk import values_for
from workflow.service import RecordsWriter
from workflow.web import WebSettings, create_app

from .conftest import PASSWORD, Site
from .test_casepage import post_step

DRAIN_S = 120.0  # a bound for a loaded test machine; the records take well under a second


def _signed_off(site: Site, client: TestClient | None = None) -> tuple[str, RecordsWriter]:
    """A dose signed off through the page's form, its records left to a writer not started."""
    writer = site.bedside.records_later or site.bedside.write_records_later(start=False)
    view = site.walk_to("record_sign_off")
    cid = view.case.case_id
    site.clock.advance(minutes=5)
    values = values_for(view.case, "record_sign_off", site.clock.now())
    _, r = post_step(site, "n.alvarez", cid, "record_sign_off", values)
    assert r.status_code == 303, r.text
    return cid, writer


def test_the_sign_off_page_says_records_are_being_made_then_links_them(site: Site) -> None:
    cid, writer = _signed_off(site)
    nurse = site.client("n.alvarez")
    signed = site.bedside.load(cid).case.events[-1].seq
    page = nurse.get(f"/cases/{cid}?signed={signed}").text
    assert "Signed: Administration record sign-off by Nadia Alvarez" in page
    assert (
        "The dose is signed off. Its records are being signed and archived; "
        "their links appear below when they are ready." in page
    )
    assert 'id="records-pending"' in page and "Records being made" in page
    # Without script: a plain link to look again (the case has ended: no form to lose).
    assert f'<a class="btn" href="/cases/{cid}#records">Check again</a>' in page
    assert f'data-records-state="/api/cases/{cid}/records-state"' in page
    assert "/records/" not in page.replace("/records-state", "")
    assert nurse.get(f"/api/cases/{cid}").json()["records"] == "pending"
    state = nurse.get(f"/api/cases/{cid}/records-state").json()
    assert state == {"state": "pending", "reason": None, "records": []}

    writer.start()
    assert writer.drain(DRAIN_S)
    page = nurse.get(f"/cases/{cid}").text
    assert "Records being made" not in page and "data-records-state=" not in page
    assert "Check again" not in page and "records-note" not in page
    state = nurse.get(f"/api/cases/{cid}/records-state").json()
    assert state["state"] == "archived"
    assert sorted(r["kind"] for r in state["records"]) == ["administration", "compounding"]
    for record in state["records"]:
        assert f'href="/records/{record["sha256"]}.pdf"' in page
        pdf = nurse.get(f"/records/{record['sha256']}.pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert nurse.get(f"/api/cases/{cid}").json()["records"] == "archived"
    writer.close()


def test_the_api_sign_off_answers_records_pending(sqlite_site: Site) -> None:
    site = sqlite_site
    writer = site.bedside.write_records_later(start=False)
    view = site.walk_to("record_sign_off")
    cid = view.case.case_id
    nurse = site.client("n.alvarez")
    assert nurse.get(f"/api/cases/{cid}").json()["records"] is None  # open: none yet
    site.clock.advance(minutes=5)
    body = {
        "expected_version": view.version,
        "values": values_for(view.case, "record_sign_off", site.clock.now()),
        "password": PASSWORD,
    }
    r = nurse.post(f"/api/cases/{cid}/steps/record_sign_off", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "completed" and r.json()["records"] == "pending"
    assert nurse.get(f"/api/cases/{cid}/records").json() == []
    writer.start()
    assert writer.drain(DRAIN_S)
    assert nurse.get(f"/api/cases/{cid}").json()["records"] == "archived"
    kinds = sorted(r["kind"] for r in nurse.get(f"/api/cases/{cid}/records").json())
    assert kinds == ["administration", "compounding"]
    writer.close()


def test_a_writer_failure_shows_ended_without_records(sqlite_site: Site, home: Path) -> None:
    site = sqlite_site
    cid, writer = _signed_off(site)
    key = next((home / "pki").glob("signing-key*.pem"))
    key.chmod(0o644)  # signing refuses a key others may read
    writer.start()
    assert writer.drain(DRAIN_S)
    nurse = site.client("n.alvarez")
    page = nurse.get(f"/cases/{cid}").text
    assert 'id="records-failed"' in page and "Ended without records (" in page
    assert "<code>bedside archive catch-up</code> makes them" in page
    assert "Records being made" not in page
    assert nurse.get(f"/api/cases/{cid}").json()["records"] == "failed"
    state = nurse.get(f"/api/cases/{cid}/records-state").json()
    assert state["state"] == "failed" and state["reason"] and state["records"] == []
    writer.close()
    key.chmod(0o600)
    assert site.bedside.archive_pending().archived == [cid]  # what catch-up does
    assert "Ended without records" not in nurse.get(f"/cases/{cid}").text
    assert nurse.get(f"/api/cases/{cid}").json()["records"] == "archived"


def test_the_app_drains_the_writer_when_it_stops(sqlite_site: Site) -> None:
    """`bedside serve` passes the writer's close to create_app's on_shutdown (before the
    signing pool's): the records queued when the server stops are made before it exits."""
    site = sqlite_site
    writer = site.bedside.write_records_later()
    app = create_app(site.bedside, WebSettings(), archive=site.archive, on_shutdown=(writer.close,))
    view = site.walk_to("record_sign_off")
    cid = view.case.case_id
    with TestClient(app) as client:
        r = client.post("/api/session", json={"username": "n.alvarez", "password": PASSWORD})
        client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        site.clock.advance(minutes=5)
        body = {
            "expected_version": view.version,
            "values": values_for(view.case, "record_sign_off", site.clock.now()),
            "password": PASSWORD,
        }
        r = client.post(f"/api/cases/{cid}/steps/record_sign_off", json=body)
        assert r.status_code == 200, r.text
    assert writer.queued() == []
    kinds = sorted(r.kind for r in site.bedside.search_archive(case_id=cid))
    assert kinds == ["administration", "compounding"]
