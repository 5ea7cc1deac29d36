"""Issue 13.8 and 13.9 on the web: the JSON API and the admin page warn of a printed name that
mixes look-alike scripts and need an explicit confirmation; a printed name another active
account prints is refused; pages isolate names for right-to-left display and show the
account id beside each signer; the records and the bag label print names in every script."""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path

from workflow.dev.demo import _SIGNERS
from workflow.dev.walk import values_for
from workflow.service import CaseView

from .conftest import Site, cred, csrf_of

NEW_USER = {"username": "p.smith", "roles": ["nurse"], "password": "a long temporary pw 1"}
IMITATION = "Pаul Smith"  # the second letter is Cyrillic


def test_the_api_warns_of_a_mixed_script_printed_name_and_refuses_a_taken_one(
    site: Site,
) -> None:
    admin = site.client("root")
    r = admin.post("/api/users", json={**NEW_USER, "printed_name": IMITATION})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "mixed_script_name" and body["field"] == "printed_name"
    assert any("U+0430" in d for d in body["details"])
    assert "p.smith" not in [u["username"] for u in admin.get("/api/users").json()]
    r = admin.post(
        "/api/users", json={**NEW_USER, "printed_name": IMITATION, "confirm_mixed_script": True}
    )
    assert r.status_code == 201, r.text
    assert r.json()["printed_name"] == IMITATION and len(r.json()["id"]) == 32
    taken = site.bedside.identity.get_user("n.alvarez").printed_name
    r = admin.post(
        "/api/users", json={**NEW_USER, "username": "n.alvarez2", "printed_name": taken.upper()}
    )
    assert r.status_code == 422 and r.json()["field"] == "printed_name", r.text
    assert "n.alvarez" in r.json()["message"]


def test_the_admin_page_asks_for_the_confirmation_and_keeps_what_was_typed(
    sqlite_site: Site,
) -> None:
    admin = sqlite_site.client("root")
    page = admin.get("/admin/users")
    assert 'name="confirm_mixed_script"' not in page.text
    form = {
        "csrf_token": csrf_of(page.text),
        "username": "p.smith",
        "printed_name": IMITATION,
        "roles": "nurse",
        "password": "a long temporary pw 1",
    }
    refused = admin.post("/admin/users", data=form, follow_redirects=False)
    assert refused.status_code == 422
    assert 'name="confirm_mixed_script"' in refused.text
    assert f'value="{IMITATION}"' in refused.text and 'value="p.smith"' in refused.text
    assert "U+0430" in refused.text
    form["csrf_token"] = csrf_of(refused.text)
    done = admin.post(
        "/admin/users", data={**form, "confirm_mixed_script": "on"}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    user = sqlite_site.bedside.identity.get_user("p.smith")
    listed = admin.get("/admin/users").text
    assert f"<bdi>{IMITATION}</bdi>" in listed and user.id in listed


def _finish(site: Site, view: CaseView) -> str:
    view = site.walk_to("record_sign_off", view)
    site.clock.advance(minutes=5)
    values = values_for(view.case, "record_sign_off", site.clock.now())
    view = site.bedside.sign_step(
        view.case.case_id,
        view.version,
        "record_sign_off",
        values,
        cred(_SIGNERS["record_sign_off"]),
    )
    assert view.case.state == "completed"
    return view.case.case_id


def _words(pdf: bytes) -> list[str]:
    html = subprocess.run(
        ["pdftotext", "-bbox", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()
    words = re.findall(r"<word [^>]*>([^<]*)</word>", html)
    return [unicodedata.normalize("NFKC", w).strip(",") for w in words]


def test_pages_records_and_label_show_names_in_order_and_signers_with_their_ids(
    sqlite_site: Site, tmp_path: Path
) -> None:
    site = sqlite_site
    site.course_id = site.new_course("MRN-8001", "عبد الرحمن", "محمد", "1970-05-05")
    nurse = site.bedside.identity.get_user("n.alvarez")
    # The bag label, once the preparation is signed: the Arabic name is joined and drawn
    # right to left (poppler lists a right-to-left word's glyphs left to right: reversed).
    view = site.walk_to("double_check_first")
    label = site.client("t.mensah").get(f"/api/cases/{view.case.case_id}/label.pdf")
    assert label.status_code == 200
    label_words = _words(label.content)
    assert "محمد"[::-1] in label_words and "الرحمن"[::-1] in label_words, label_words
    case_id = _finish(site, view)
    # The case page: the patient's name isolated for bidirectional display; each signer with
    # the account id.
    page = site.client("n.chen").get(f"/cases/{case_id}").text
    assert '<h1 class="name"><bdi>' in page
    assert f'<bdi>{nurse.printed_name}</bdi> (<span class="uid">{nurse.id}</span>)' in page
    shas = sorted(set(re.findall(r'href="/records/([0-9a-f]{64})\.pdf"', page)))
    assert len(shas) == 2
    auditor = site.client("a.ibrahim")
    for sha in shas:
        pdf = auditor.get(f"/api/archive/{sha}/pdf").content
        (tmp_path / f"{sha}.pdf").write_bytes(pdf)
        text = " ".join(
            subprocess.run(
                ["pdftotext", "-raw", "-", "-"], input=pdf, capture_output=True, check=True
            )
            .stdout.decode()
            .split()
        )
        # Each signature line: the printed name and the user id under it (the id may wrap
        # inside its narrow column, so compare without spaces; -raw keeps a cell's lines
        # together instead of interleaving them with the next column's); the index keeps the
        # same.
        record = site.archive.store.get_archived_record(sha)
        signers = record.signers.split("; ")
        assert signers and all(re.fullmatch(r".+ \([0-9a-f]{32}\)", who) for who in signers)
        assert "Printed name (user id)" in text
        for who in signers:
            assert who.replace(" ", "") in text.replace(" ", ""), who
        if record.kind == "administration":
            assert f"{nurse.printed_name} ({nurse.id})" in signers
        (tmp_path / f"{record.kind}.pdf").write_bytes(pdf)
        words = _words(pdf)
        assert "محمد"[::-1] in words, words[:40]
        record = site.archive.store.get_archived_record(sha)
        assert f"({nurse.id})" in record.signers or record.kind != "administration"
