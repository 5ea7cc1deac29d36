"""Issue 14.4: the protocol declares its display words, its scanned products and which steps
feed which record sections; the loader checks them completely; a protocol text written before
they existed still loads, walks and prints its records."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from workflow.core.dosing import plan_dose
from workflow.core.errors import ProtocolError
from workflow.core.gs1 import SCAN_STEPS
from workflow.core.protocol import Protocol
from workflow.core.protocol.loader import load_protocol
from workflow.core.protocol.overlay import load_overlay
from workflow.core.protocol.words import WORD_KEYS
from workflow.dev.demo import run_in_memory
from workflow.records.case_records import record_documents
from workflow.records.labels import bag_label_pdf
from workflow.resources import default_protocol_path

SHIPPED = default_protocol_path().read_text(encoding="utf-8")
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _load(tmp_path: Path, text: str, name: str = "p.yaml") -> Protocol:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_protocol(path)


def _refused(tmp_path: Path, old: str, new: str) -> list[str]:
    assert old in SHIPPED, old
    path = tmp_path / "broken.yaml"
    path.write_text(SHIPPED.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ProtocolError) as exc:
        load_protocol(path)
    return [str(i) for i in exc.value.issues]


def _without_declarations(text: str) -> str:
    """The protocol as 1.3.0 wrote it: no ``words``, no ``records``, no steps' ``scans``."""
    out: list[str] = []
    block: str | None = None  # the indentation whose deeper lines are being dropped
    for line in text.splitlines():
        if block is not None:
            if line.startswith(block) or not line.strip():
                continue
            block = None
        if re.match(r"^(words|records):", line):
            block = "  "
            continue
        if re.match(r"^    scans:", line):
            block = "      "
            continue
        out.append(line)
    return "\n".join(out).replace('version: "1.7.0"', 'version: "1.3.0"') + "\n"


def test_shipped_protocol_declares_words_scans_and_records(protocol: Protocol) -> None:
    assert set(protocol.words) == set(WORD_KEYS)
    assert protocol.scan_steps() == {
        "vial": "reconstitution",
        "diluent": "reconstitution",
        "d5w": "dilution",
    }
    assert dict(SCAN_STEPS) == protocol.scan_steps()  # the CLI's choices, read from the file
    assert {r.kind for r in protocol.records} == {"compounding", "administration"}
    covered = {s for r in protocol.records for s in r.steps}
    assert covered == set(protocol.step_ids())
    assert protocol.say("concentration_window") == "30-70 mcg/mL"
    assert protocol.say("product").startswith("Proleukin (aldesleukin) 22,000,000 IU (1.3 mg)")


def test_words_follow_a_tightened_number(protocol: Protocol, tmp_path: Path) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text(
        "overlay: {id: t, name: T, version: '1', protocol: aldesleukin-high-dose}\n"
        "sources: {site: {title: Site policy, citation: local, label: none}}\n"
        "tighten_numbers:\n"
        "  dosing.beyond_use: {value: 24, unit: h, source: site}\n"
        "  dosing.concentration_window.min: {value: 40, unit: mcg/mL, source: site}\n"
    )
    tight = load_overlay(overlay, protocol)
    assert "within 24 h" in tight.say("beyond_use") and "48" not in tight.say("beyond_use")
    assert tight.say("concentration_window") == "40-70 mcg/mL"
    # A dose below the tightened window is warned about in the overlay's words.
    warning = plan_dose(tight, "68").warnings
    assert [w.code for w in warning] == []
    low = plan_dose(tight, "20")  # 12 MIU = 0.73 mg in 25.7 mL: 28.6 mcg/mL
    assert any("40-70 mcg/mL window" in w.message for w in low.warnings), low.warnings
    assert all("30-70" not in w.message for w in low.warnings)


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("  route_short: IV\n", "  route_short: IV\n  routes: IV\n", "unknown key 'routes'"),
        ("  route_short: IV\n", "", "words: missing 'route_short'"),
        (
            '  concentration_window: "{dosing.concentration_window.min}-',
            '  concentration_window: "{dosing.concentration_window.low}-',
            "unknown placeholder(s) {dosing.concentration_window.low}",
        ),
        (
            '{kind: d5w, ingredient: "{words.final_diluent} bag", '
            'amount: "{d5w_bag_volume_ml}, {container}"}',
            '{kind: bag, ingredient: "{words.final_diluent} bag", '
            'amount: "{d5w_bag_volume_ml}, {container}"}',
            "a scanned 'bag' needs the items bag_lot, bag_expiry on this step",
        ),
        (
            'amount: "{vial_count} vial(s)"',
            'amount: "{vials_used} vial(s)"',
            "unknown placeholder(s) {vials_used}",
        ),
        (
            '{key: qa, title: "Quality checks (visual inspection)", step: pharmacy_verification',
            '{key: qa, title: "Quality checks (visual inspection)", step: pharmacy_check',
            "step 'pharmacy_check' does not exist",
        ),
        (
            "only: [visual_inspection], signed_by: false}",
            "only: [visual_check], signed_by: false}",
            "step 'pharmacy_verification' has no item 'visual_check'",
        ),
        (
            "{key: outcome, title: Outcome, content: outcome}",
            "{key: outcome, title: Outcome, content: summary}",
            "content 'summary' is not known",
        ),
        (
            "infusion_start, infusion_stop, observation, record_sign_off]",
            "infusion_start, infusion_stop, observation]",
            "step(s) record_sign_off are on no record's 'steps'",
        ),
        (
            "{key: dilution, title: Dilution, step: dilution, skip: [label_applied]}",
            "{key: dilution, title: Dilution, step: dilution, skip: [label_applied], "
            "only: [d5w_lot]}",
            "give 'only' or 'skip', not both",
        ),
        (
            "add: [beyond_use]}\n      - {key: qa",
            "add: [bud]}\n      - {key: qa",
            "'bud' is not known",
        ),
    ],
)
def test_declarations_are_checked_completely(
    tmp_path: Path, old: str, new: str, fragment: str
) -> None:
    issues = _refused(tmp_path, old, new)
    assert any(fragment in i for i in issues), issues
    assert all(re.match(rf"{re.escape(str(tmp_path))}/broken.yaml:\d+: ", i) for i in issues)


def test_a_product_scanned_on_two_steps_or_twice_is_refused(tmp_path: Path) -> None:
    dilution_scans = "      - {kind: d5w, ingredient:"
    vial_again = '      - {kind: vial, ingredient: "{words.final_diluent} bag", amount: ""}\n'
    text = SHIPPED.replace(dilution_scans, vial_again + dilution_scans, 1).replace(
        "      - {id: d5w_lot, label: D5W bag lot,",
        "      - {id: vial_lot, label: Vial lot, type: text, required: false}\n"
        "      - {id: vial_expiry, label: Vial expiry, type: expiry, required: false}\n"
        "      - {id: d5w_lot, label: D5W bag lot,",
        1,
    )
    path = tmp_path / "twice.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProtocolError) as exc:
        load_protocol(path)
    assert "kind 'vial' is already scanned on step 'reconstitution'" in str(exc.value)
    twice = '      - {kind: d5w, ingredient: "x", amount: ""}\n' + dilution_scans
    issues = _refused(tmp_path, dilution_scans, twice)
    assert any("kind 'd5w' is listed twice" in i for i in issues), issues


def test_overlay_formulary_kinds_come_from_the_protocols_scans(
    protocol: Protocol, tmp_path: Path
) -> None:
    overlay = tmp_path / "f.yaml"
    overlay.write_text(
        "overlay: {id: f, name: F, version: '1', protocol: aldesleukin-high-dose}\n"
        "formulary:\n"
        "  - {gtin: '00312345678906', kind: syringe, description: x, source: handbook}\n"
    )
    with pytest.raises(ProtocolError) as exc:
        load_overlay(overlay, protocol)
    assert "kind 'syringe' is not a product the protocol scans (allowed: vial, diluent, d5w)" in (
        str(exc.value)
    )


def test_a_text_from_before_the_declarations_loads_walks_and_prints(
    protocol: Protocol, tmp_path: Path
) -> None:
    """Cases pinned to 1.3.0 carry on after the upgrade: their words, scans and records are
    built from that text's own data (option labels, quantities, items), nothing borrowed."""
    old = _load(tmp_path, _without_declarations(SHIPPED), "aldesleukin-1.3.0.yaml")
    assert old.version == "1.3.0"
    assert "words:" not in Path(old.path).read_text() and "scans:" not in Path(old.path).read_text()
    assert old.scan_steps() == protocol.scan_steps()  # inferred from {kind}_entry/_lot/_expiry
    assert old.say("reconstitution_diluent") == "Sterile Water for Injection, USP"
    assert old.say("concentration_window") == "30-70 mcg/mL"
    assert old.say("in_line_filter") == ""
    cases = run_in_memory(old, 2, START)
    assert [c.state for c in cases] == ["completed", "completed"]
    docs = record_documents(cases[0], "0" * 64)
    assert [d.kind for d in docs] == ["compounding", "administration"]
    comp = {s.key: s for s in docs[0].sections}
    lots = [row[2] for row in comp["ingredients"].tables[0].rows]
    assert lots == ["PLK2291", "SW40812", "D5W7731"]
    assert {"reconstitution", "dilution", "pharmacy_verification"} <= set(comp)
    admin = {s.key for s in docs[1].sections}
    assert {"hold_checks", "double_check", "pre_infusion", "exits"} <= admin
    assert bag_label_pdf(cases[0], UTC).startswith(b"%PDF")


def test_demo_doses_are_limited_by_the_protocol_in_use(tmp_path: Path) -> None:
    """``bedside demo --doses N``: at most a course's doses as the protocol (and overlay) set
    them, refused before the home is touched."""
    overlay = tmp_path / "o.yaml"
    overlay.write_text(
        "overlay: {id: t, name: T, version: '1', protocol: aldesleukin-high-dose}\n"
        "sources: {site: {title: Site policy, citation: local, label: none}}\n"
        "tighten_numbers:\n"
        "  schedule.max_doses_per_course: {value: 24, unit: doses, source: site}\n"
    )
    home = tmp_path / "home"
    argv = [sys.executable, "-m", "workflow.cli", "--home", str(home), "--overlay", str(overlay)]
    done = subprocess.run(
        [*argv, "demo", "--doses", "25"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "doses" in done.stderr and "1 to 24" in done.stderr
    assert "Traceback" not in done.stderr
    assert not home.exists()
