"""Institution overlays: they may only tighten or add, each addition sourced; a loosening
overlay is refused naming the rule or key with FILE:LINE; course rules; version pinning."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from interop.support import (
    given_dose,
    held_and_skipped,
    installation,
    new_course,
    next_slot,
    open_and_order,
    reopen,
    step,
    walk,
)

from workflow.core.course import course_status
from workflow.core.errors import ProtocolError, StepRefused
from workflow.core.protocol import Protocol, load_protocol
from workflow.core.protocol.model import Condition
from workflow.core.protocol.overlay import implies, load_overlay, parse_overlay
from workflow.resources import default_protocol_path

EXAMPLE = Path(default_protocol_path()).parent / "aldesleukin.overlay-example.yaml"

HEAD = """\
overlay:
  id: test-overlay
  name: Test overlay
  version: "2.0.0"
  protocol: aldesleukin-high-dose
sources:
  local_table:
    title: Local table
    citation: Test institution, table 1
    label: none
"""


def overlay(protocol: Protocol, body: str, name: str = "t.yaml") -> Protocol:
    return parse_overlay((HEAD + textwrap.dedent(body)).encode(), name, protocol)


def refused(protocol: Protocol, body: str) -> str:
    with pytest.raises(ProtocolError) as err:
        overlay(protocol, body)
    return str(err.value)


@pytest.fixture
def example(protocol: Protocol) -> Protocol:
    return load_overlay(EXAMPLE, protocol)


def test_example_overlay_adds_sourced_rules_items_and_a_course_rule(
    protocol: Protocol, example: Protocol
) -> None:
    assert example.overlay is not None
    assert example.overlay.version == "1.0.0"
    assert example.base_hash == protocol.content_hash
    assert example.content_hash not in (protocol.content_hash, example.overlay.content_hash)
    # The label rules all stay; the institution's come after them, each with its own source.
    assert [r.id for r in example.rules[: len(protocol.rules)]] == [r.id for r in protocol.rules]
    added = example.rules[len(protocol.rules) :]
    assert {r.id for r in added} == {
        "inst_creatinine_ge_3",
        "inst_urine_below_80_per_8h",
        "inst_heart_rate_above_130",
        "inst_platelets_below_30000",
        "inst_weight_gain_above_15_pct",
    }
    assert all(r.source == "institutional_tables" for r in added)
    assert example.sources["institutional_tables"].label == "none"
    hold_items = {i.id for i in example.step("hold_checks").items}
    assert {"heart_rate_bpm", "platelets_per_ul", "urine_output_ml_8h"} <= hold_items
    assert example.step("pre_infusion").item("icu_facility_available") is not None
    assert example.step("dilution").item("albumin_added") is not None
    (course_rule,) = example.course_rules
    assert course_rule.held_doses_at_least == 3
    identity = example.identity()
    assert identity["protocol_hash"] == protocol.content_hash
    assert identity["overlay"] == {
        "id": example.overlay.id,
        "name": example.overlay.name,
        "version": "1.0.0",
        "hash": example.overlay.content_hash,
    }


def test_tightening_a_label_threshold_is_accepted(protocol: Protocol) -> None:
    tighter = overlay(
        protocol,
        """
        tighten_rules:
          - id: creatinine_above_4_5
            action: hold
            text: "Serum creatinine 3 mg/dL or more: withhold"
            when: {item: serum_creatinine_mg_dl, op: ge, value: 3}
            source: local_table
          - id: systolic_bp_below_90
            action: discontinue
            text: "SBP below 95: discontinue"
            when: {item: sbp_mmhg, op: lt, value: 95}
            source: local_table
        tighten_numbers:
          schedule.max_doses_per_cycle: {value: 12, unit: doses, source: local_table}
          dosing.beyond_use: {value: 24, unit: h, source: local_table}
        """,
    )
    assert tighter.rule("creatinine_above_4_5").source == "local_table"
    assert tighter.rule("systolic_bp_below_90").action == "discontinue"
    assert tighter.schedule.max_doses_per_cycle.value == 12
    assert tighter.dosing.beyond_use.value == 24
    assert len(tighter.rules) == len(protocol.rules)


@pytest.mark.parametrize(
    ("body", "named", "line"),
    [
        (
            """
            tighten_rules:
              - id: creatinine_above_4_5
                action: hold
                text: "Creatinine above 5"
                when: {item: serum_creatinine_mg_dl, op: gt, value: 5}
                source: local_table
            """,
            "rule 'creatinine_above_4_5' loosens 'when'",
            13,
        ),
        (
            """
            tighten_rules:
              - id: sustained_vt
                action: hold
                text: "VT: hold"
                when: {item: vt_sustained_beats, op: ge, value: 5}
                source: local_table
            """,
            "rule 'sustained_vt' would turn a discontinue rule into a hold",
            13,
        ),
        (
            """
            tighten_rules:
              - id: spo2_below_90
                action: hold
                text: "SpO2 below 90"
                when: {item: spo2_pct, op: lt, value: 90}
                resume_when: {item: spo2_pct, op: gt, value: 85}
                source: local_table
            """,
            "rule 'spo2_below_90' loosens 'resume_when'",
            13,
        ),
        (
            """
            tighten_rules:
              - id: mental_status_changes
                action: hold
                text: "Only severe confusion"
                when: {item: mental_status, op: eq, value: severe_confusion_or_agitation}
                source: local_table
            """,
            "rule 'mental_status_changes' loosens 'when'",
            13,
        ),
        (
            """
            tighten_numbers:
              schedule.max_doses_per_cycle: {value: 16, unit: doses, source: local_table}
            """,
            "'schedule.max_doses_per_cycle' raised from 14 to 16",
            13,
        ),
        (
            """
            tighten_numbers:
              schedule.min_interval: {value: 6, unit: h, source: local_table}
            """,
            "'schedule.min_interval' lowered from 8 to 6",
            13,
        ),
        (
            """
            tighten_numbers:
              dosing.dose_per_kg: {value: 500000, unit: IU/kg, source: local_table}
            """,
            "'dosing.dose_per_kg' cannot be changed by an overlay",
            13,
        ),
        (
            """
            remove_rules: [sustained_vt]
            """,
            "unknown key 'remove_rules'",
            12,
        ),
        (
            """
            add_rules:
              - id: lethargy_moderate_or_severe
                action: hold
                text: "again"
                when: {item: lethargy, op: eq, value: severe}
                source: local_table
            """,
            "rule 'lethargy_moderate_or_severe' is already a protocol rule",
            13,
        ),
    ],
)
def test_loosening_is_refused_naming_the_rule_or_key(
    protocol: Protocol, body: str, named: str, line: int
) -> None:
    message = refused(protocol, body)
    assert named in message
    assert f"t.yaml:{line}:" in message


def test_overlay_problems_are_all_reported_with_lines(protocol: Protocol) -> None:
    message = refused(
        protocol,
        """
        add_items:
          - step: no_such_step
            source: local_table
            items: [{id: x, label: X, type: boolean, required: false}]
        add_rules:
          - id: hr
            action: hold
            text: "HR"
            when: {item: heart_rate_bpm, op: gt, value: 130}
            source: nowhere
        course_rules:
          - {id: c, action: hold, text: t, held_doses_at_least: 3, source: local_table}
        """,
    )
    assert "t.yaml:13: add_items[0].step 'no_such_step' is not a protocol step" in message
    assert "item 'heart_rate_bpm' is not an item" in message
    assert "source 'nowhere' is not defined" in message
    assert "course_rules[0].action 'hold' is not allowed" in message


def test_overlay_for_another_protocol_is_refused(protocol: Protocol) -> None:
    with pytest.raises(ProtocolError, match="does not match the protocol's id"):
        parse_overlay(HEAD.replace("aldesleukin-high-dose", "other").encode(), "o.yaml", protocol)


def test_implies_is_sound_on_shapes() -> None:
    gt5 = Condition(item="x", op="gt", value=__import__("decimal").Decimal(5))
    ge3 = Condition(item="x", op="ge", value=__import__("decimal").Decimal(3))
    assert implies(gt5, ge3)
    assert not implies(ge3, gt5)
    assert implies(gt5, Condition(any_of=(ge3,)))
    assert implies(Condition(all_of=(gt5, Condition(item="y", op="eq", value="a"))), ge3)
    assert not implies(Condition(any_of=(gt5, Condition(item="y", op="eq", value="a"))), ge3)
    a = Condition(item="m", op="in", value=("p", "q"))
    assert implies(Condition(item="m", op="eq", value="p"), a)
    assert not implies(a, Condition(item="m", op="eq", value="p"))


# -- the overlay's rules at work ---------------------------------------------------------------
def test_overlay_rule_holds_a_dose(db_url: str, example: Protocol) -> None:
    with installation(db_url, example) as app:
        view = walk(app, open_and_order(app, new_course(app)), until="hold_checks")
        view = step(app, view, heart_rate_bpm="142")
        assert view.case.state == "held"
        (hold,) = view.case.active_holds
        assert hold.rule_id == "inst_heart_rate_above_130"
        assert hold.source == "institutional_tables"
        opened = view.case.events[0].data["protocol"]
        assert opened["hash"] == example.content_hash
        assert opened["overlay"]["version"] == "1.0.0"


def test_three_held_doses_discontinue_the_course(db_url: str, example: Protocol) -> None:
    with installation(db_url, example) as app:
        course = new_course(app)
        for _ in range(3):
            held_and_skipped(app, course, platelets_per_ul="21000")
        status = course_status(app.course_cases(course), example.course_rules)
        assert status.discontinued is not None
        assert "inst_held_3_doses" in status.discontinued
        with pytest.raises(StepRefused) as err:
            open_and_order(app, course)
        assert err.value.reason == "course_discontinued"
        assert "3 held doses" in err.value.message


def test_two_held_doses_do_not(db_url: str, example: Protocol) -> None:
    with installation(db_url, example) as app:
        course = new_course(app)
        for _ in range(2):
            held_and_skipped(app, course, weight_gain_pct="18")
        # The hold carries over: the next dose goes ahead once the finding has resolved.
        view = given_dose(app, course, weight_gain_pct="4")
        assert view.case.state == "completed"


# -- version pinning ------------------------------------------------------------------------------
def test_a_running_case_stays_on_the_protocol_it_started_with(
    db_url: str, protocol: Protocol, example: Protocol, tmp_path: Path
) -> None:
    with installation(db_url, protocol) as app:
        course_a = new_course(app, "MRN-A")
        running = walk(app, open_and_order(app, course_a), until="reconstitution")
        # The institution installs its overlay: new cases open on the combination...
        app2 = reopen(app, example)
        course_b = new_course(app2, "MRN-B")
        overlaid = walk(app2, open_and_order(app2, course_b), until="hold_checks")
        assert overlaid.case.protocol.content_hash == example.content_hash
        # ...and then a new protocol version: both earlier cases still replay on theirs.
        text = Path(protocol.path).read_text()
        text = text.replace(f'version: "{protocol.version}"', 'version: "9.0.0"')
        newer_path = tmp_path / "aldesleukin.yaml"
        newer_path.write_text(text)
        newer = load_protocol(newer_path)
        app3 = reopen(app, newer)
        old = app3.load(running.case.case_id)
        assert old.case.protocol.version == protocol.version
        assert old.case.protocol.content_hash == protocol.content_hash
        assert old.case.protocol.overlay is None
        mid = app3.load(overlaid.case.case_id)
        assert mid.case.protocol.content_hash == example.content_hash
        assert mid.case.protocol.overlay is not None
        assert mid.case.protocol.rule("inst_heart_rate_above_130").source == "institutional_tables"
        # The running case carries on, on its version, through the service that has 9.0.0.
        done = walk(app3, old)
        assert done.case.state == "completed"
        assert done.case.protocol.version == protocol.version
        # A new dose for that course opens on 9.0.0.
        next_slot(app3, course_a)
        fresh = open_and_order(app3, course_a)
        assert fresh.case.protocol.version == "9.0.0"


def test_records_name_protocol_and_overlay(db_url: str, example: Protocol) -> None:
    from workflow.records.case_records import administration_record

    with installation(db_url, example) as app:
        view = given_dose(app, new_course(app))
        doc = administration_record(view.case, app.store.case_chain_hash(view.case.case_id))
        ref = doc.protocol.to_json()
        assert ref["sha256"] == example.content_hash
        assert ref["file_sha256"] == example.base_hash
        assert ref["overlay_version"] == "1.0.0"
        assert example.overlay is not None
        assert ref["overlay_sha256"] == example.overlay.content_hash


def test_protocol_without_overlay_keeps_its_record_form(protocol: Protocol) -> None:
    from workflow.records.document import ProtocolRef

    assert set(ProtocolRef("n", "1", "a" * 64).to_json()) == {"name", "version", "sha256"}
    assert replace(protocol).identity() == {
        "id": protocol.id,
        "version": protocol.version,
        "hash": protocol.content_hash,
    }
