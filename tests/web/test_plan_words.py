"""The dose plan in words for people: the case page, the order evidence a pharmacist signs on
and the pharmacy queue print the plan rounded exactly as ``bedside dose`` and the signed record
do (core/dosing.PLAN_DECIMALS), never the exact 4-decimal quotients ("2.2667 mL"); the JSON
API keeps its numbers and adds the same words. Real store, real signatures, real CLI."""

from __future__ import annotations

import re

import pytest

from workflow.cli import main
from workflow.core.dosing import DosePlan, fmt

from .conftest import Site

WEIGHT = "68"  # the weight Site.open_case orders with


def cli_words(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """What `bedside dose --weight-kg 68` prints for each number a page shows."""
    assert main(["dose", "--weight-kg", WEIGHT]) == 0
    out = capsys.readouterr().out
    found: dict[str, str] = {}
    for key, pattern in {
        "dose": r"dose +([\d,]+ IU = [\d.]+ mg)",
        "withdraw": r"withdraw +([\d.]+ mL)",
        "diluent": r"dilute in +([\d,]+ mL)",
        "final": r"final +([\d.]+ mL at [\d.]+ mcg/mL)",
        "pump": r"infuse +over (\d+) min at ([\d.]+ mL/h)",
    }.items():
        m = re.search(pattern, out)
        assert m, f"{key} not in the CLI output:\n{out}"
        found[key] = " ".join(m.groups()) if key != "pump" else f"{m[2]} over {m[1]} min"
    return found


def exact_texts(plan: DosePlan) -> list[str]:
    """The plan's unrounded numbers as the pages used to print them (trimmed 4 decimals)."""
    out = []
    for name in ("reconstituted_volume_ml", "final_volume_ml", "final_concentration_mcg_per_ml"):
        text = fmt(plan.value(name), 4).rstrip("0").rstrip(".")
        out += [text, str(plan.value(name))]
    return out


def section(page: str, pattern: str) -> str:
    m = re.search(pattern, page, re.S)
    assert m, f"no match for {pattern}"
    return m.group(0)


def test_pages_show_the_plan_as_the_cli_and_the_record_say_it(
    sqlite_site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site = sqlite_site
    words = cli_words(capsys)
    # The 68 kg plan's quotients are not round: the test would prove nothing otherwise.
    assert words["withdraw"] == "2.27 mL" and words["final"] == "52.27 mL at 47.7 mcg/mL"
    view = site.open_case()  # the order is signed; the pharmacist verifies it next
    cid = view.case.case_id
    plan = view.case.plan
    assert plan is not None and str(plan.weight_kg) == WEIGHT
    exact = exact_texts(plan)
    assert "2.2667" in exact and "52.2667" in exact and "47.7041" in exact

    pharmacist = site.client("p.lindqvist")
    page = pharmacist.get(f"/cases/{cid}").text
    case_plan = section(page, r'<details class="card plan".*?</details>')
    evidence = section(page, r'id="evidence-order".*?</section>')
    queue = pharmacist.get("/pharmacy").text
    row = section(queue, rf'<tr [^>]*data-case="{cid}">.*?</tr>')

    for where, html in (("case page", case_plan), ("evidence", evidence)):
        assert f"{words['dose']}</dd>" in html, where
        assert f"<dd>{words['final']}</dd>" in html, where
        assert f"<dd>{words['pump']}</dd>" in html, where
    assert f"<dd>{words['withdraw']}</dd>" in case_plan
    assert f"<dd>{words['diluent']}</dd>" in case_plan
    assert words["dose"].split(" = ")[0] in row
    assert f"{words['diluent']} D5W → {words['final']}" in row
    for where, html in (("case page", page), ("pharmacy queue", queue)):
        for text in exact:
            assert text not in html, f"{where} shows the unrounded {text}"

    # The JSON API keeps its numbers (a machine's contract) and carries the same words.
    api = pharmacist.get(f"/api/cases/{cid}").json()
    assert api["plan"]["reconstituted_volume_ml"] == pytest.approx(2.2667)
    assert api["plan_words"]["reconstituted_volume_ml"] == "2.27"
    assert api["plan_words"] == plan.words()
    queue_api = pharmacist.get("/api/pharmacy").json()
    mine = next(r for r in queue_api if r["id"] == cid)
    assert mine["plan_words"]["final_volume_ml"] == "52.27"


def test_a_blinded_viewer_gets_no_plan_words(sqlite_site: Site) -> None:
    """The words are the plan: whoever may not see the plan may not see them either."""
    site = sqlite_site
    view = site.walk_to("double_check_second")
    api = site.client("n.chen").get(f"/api/cases/{view.case.case_id}").json()
    assert api["plan"] is None and api["plan_words"] is None
