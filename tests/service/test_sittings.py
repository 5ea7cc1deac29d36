"""Sittings through the service on SQLite and PostgreSQL: the consecutive steps one person does
at one sitting, signed with one signature, each its own event judged as when signed alone,
all appended together or none."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from interop.support import clock_of, new_course, open_and_order, step, walk, who

from workflow.archive import Archive
from workflow.core.errors import StepRefused
from workflow.dev.walk import values_for
from workflow.service import Bedside, CaseView, SittingEntry


def at_step(app: Bedside, step_id: str) -> CaseView:
    view = open_and_order(app, new_course(app))
    while (s := view.case.next_step()) is not None and s.id != step_id:
        view = step(app, view)
    assert view.case.next_step() is not None
    return view


def test_bedside_sitting_signs_both_steps_with_one_signature(
    app: Bedside, home: Path, tmp_path: Path
) -> None:
    view = at_step(app, "pre_infusion")
    clock_of(app).advance(minutes=3)
    now = clock_of(app).now()
    signed = app.sign_sitting(
        view.case.case_id,
        view.version,
        [
            SittingEntry("pre_infusion", values_for(view.case, "pre_infusion", now)),
            SittingEntry("infusion_start", values_for(view.case, "infusion_start", now)),
        ],
        who("n.alvarez"),
    )
    assert signed.version == view.version + 2
    assert signed.case.state == "infusion_stop"
    assert signed.case.given_at == now  # the infusion starts when the sitting is signed
    first, second = signed.case.events[-2:]
    assert (first.step, second.step) == ("pre_infusion", "infusion_start")
    assert first.meaning == second.meaning == "performed"
    assert first.data["sitting"] == second.data["sitting"] == ["pre_infusion", "infusion_start"]
    # Each is a signature of its own, bound to its own content, and the log still verifies.
    sigs = {s.seq: s for s in app.store.load_signatures(view.case.case_id)}
    assert sigs[first.seq].content_hash == first.content_hash()
    assert sigs[second.seq].content_hash == second.content_hash()
    assert app.store.verify_chains().ok
    again = app.load(view.case.case_id)
    assert again.case.state == "infusion_stop" and again.version == signed.version
    # And the dose goes on to its end; its record says which steps one signature signed.
    done = walk(app, signed)
    assert done.case.state == "completed"
    records = app.store.search_archive(case_id=done.case.case_id)
    (record,) = [r for r in records if r.kind == "administration"]
    pdf = tmp_path / "administration.pdf"
    pdf.write_bytes(Archive(home, app.store).blobs.get(record.sha256))
    text = " ".join(
        subprocess.run(["pdftotext", "-raw", str(pdf), "-"], capture_output=True, check=True)
        .stdout.decode()
        .split()
    )
    assert "one signature with: Start the infusion" in text, text
    assert "one signature with: At the bedside before hanging the bag" in text, text


def test_a_refused_step_of_a_sitting_stores_nothing(app: Bedside) -> None:
    view = at_step(app, "pre_infusion")
    now = clock_of(app).now()
    start = values_for(view.case, "infusion_start", now)
    start["line_patent"] = False  # must be true
    with pytest.raises(StepRefused) as exc:
        app.sign_sitting(
            view.case.case_id,
            view.version,
            [
                SittingEntry("pre_infusion", values_for(view.case, "pre_infusion", now)),
                SittingEntry("infusion_start", start),
            ],
            who("n.alvarez"),
        )
    assert exc.value.field == "line_patent"
    after = app.load(view.case.case_id)
    assert after.version == view.version and after.case.state == "pre_infusion"


@pytest.mark.parametrize(
    ("step_ids", "reason"),
    [
        (("pre_infusion",), None),  # one step is a plain signature
        (("infusion_start", "pre_infusion"), "not_a_sitting"),
        (("pre_infusion", "infusion_start", "infusion_stop"), "not_a_sitting"),
        (("double_check_second", "pre_infusion"), "not_a_sitting"),
    ],
)
def test_only_a_declared_sitting_at_the_waiting_step_signs(
    app: Bedside, step_ids: tuple[str, ...], reason: str | None
) -> None:
    view = at_step(app, "pre_infusion")
    now = clock_of(app).now()
    given = [SittingEntry(s, values_for(view.case, s, now)) for s in step_ids]
    if reason is None:
        assert app.sign_sitting(view.case.case_id, view.version, given, who("n.alvarez"))
        return
    with pytest.raises(StepRefused) as exc:
        app.sign_sitting(view.case.case_id, view.version, given, who("n.alvarez"))
    assert exc.value.reason == reason
    assert app.load(view.case.case_id).version == view.version


def test_a_sitting_not_waited_for_is_refused(app: Bedside) -> None:
    view = at_step(app, "double_check_first")
    now = clock_of(app).now()
    with pytest.raises(StepRefused) as exc:
        app.sign_sitting(
            view.case.case_id,
            view.version,
            [
                SittingEntry(s, values_for(view.case, s, now))
                for s in ("pre_infusion", "infusion_start")
            ],
            who("n.alvarez"),
        )
    assert exc.value.reason == "out_of_order"


def test_the_pharmacists_sitting_ends_on_the_eligibility_rules(app: Bedside) -> None:
    """The last step of a sitting may evaluate rules: an abnormal stress test discontinues the
    dose with both signatures stored, as when signed one at a time."""
    view = at_step(app, "order_verification")
    now = clock_of(app).now()
    eligibility = values_for(view.case, "eligibility", now)
    eligibility["stress_test_result"] = "abnormal"
    signed = app.sign_sitting(
        view.case.case_id,
        view.version,
        [
            SittingEntry("order_verification", values_for(view.case, "order_verification", now)),
            SittingEntry("eligibility", eligibility),
        ],
        who("p.lindqvist"),
    )
    assert signed.version == view.version + 2
    assert signed.case.state == "discontinued"


def test_a_role_that_may_not_sign_every_step_is_refused(app: Bedside) -> None:
    """Eligibility may be signed by a nurse, order verification only by a pharmacist."""
    view = at_step(app, "order_verification")
    now = clock_of(app).now()
    with pytest.raises(Exception) as exc:
        app.sign_sitting(
            view.case.case_id,
            view.version,
            [
                SittingEntry(s, values_for(view.case, s, now))
                for s in ("order_verification", "eligibility")
            ],
            who("n.alvarez"),
        )
    assert "role" in str(exc.value).lower() or "pharmacist" in str(exc.value).lower()
    assert app.load(view.case.case_id).version == view.version
