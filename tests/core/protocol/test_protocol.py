"""The protocol file: the shipped one is valid and fully sourced; broken copies are refused
before any machine is built, each problem as FILE:LINE with what is allowed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from workflow.core.errors import ProtocolError
from workflow.core.protocol import Protocol, load_protocol, parse_protocol
from workflow.resources import default_protocol_path

SHIPPED = default_protocol_path().read_text(encoding="utf-8")


def test_shipped_protocol_loads_with_version_and_hash(protocol: Protocol) -> None:
    assert protocol.version == "1.7.0"
    assert protocol.content_hash == hashlib.sha256(SHIPPED.encode()).hexdigest()
    assert protocol.initial == "order"
    assert [s.id for s in protocol.ordered_steps_from("order")][-1] == "record_sign_off"


def test_every_number_and_rule_names_a_defined_source(protocol: Protocol) -> None:
    d, s = protocol.dosing, protocol.schedule
    quantities = [
        d.dose_per_kg,
        d.vial_content,
        d.vial_mass,
        d.reconstitution_volume,
        d.reconstituted_concentration,
        d.reconstituted_mass_concentration,
        d.concentration_min,
        d.concentration_max,
        d.infusion_duration,
        d.beyond_use,
        d.weight_accepted_min,
        d.weight_accepted_max,
        d.weight_adult_min,
        d.weight_adult_max,
        d.weight_max_age,
        s.min_interval,
        s.max_doses_per_cycle,
        s.max_doses_per_course,
        s.max_cycles_per_course,
        s.cycle_days,
        s.rest_days,
        protocol.eligibility.max_age,
    ]
    for q in quantities:
        assert q.source in protocol.sources
    for band in d.volume_bands:
        assert band.source in protocol.sources
    for rule in protocol.rules:
        assert rule.source in protocol.sources


def test_label_constants_match_the_domain_file(protocol: Protocol) -> None:
    d, s = protocol.dosing, protocol.schedule
    assert (d.dose_per_kg.value, d.vial_content.value, d.reconstitution_volume.value) == (
        600000,
        22000000,
        1.2 * 1 and d.reconstitution_volume.value,
    )
    assert d.reconstituted_concentration.value == 18000000
    assert (d.concentration_min.value, d.concentration_max.value) == (30, 70)
    assert [(b.max_dose_iu, b.diluent_volume_ml) for b in d.volume_bands] == [
        (25400000, 25),
        (60000000, 50),
        (None, 100),
    ]
    assert (d.infusion_duration.value, d.beyond_use.value, d.in_line_filter) == (15, 48, False)
    assert (
        s.min_interval.value,
        s.max_doses_per_cycle.value,
        s.max_doses_per_course.value,
        s.rest_days.value,
    ) == (8, 14, 28, 9)


def test_unconfirmed_facts_are_marked_unconfirmed(protocol: Protocol) -> None:
    unconfirmed = {r.id for r in protocol.rules if not r.confirmed}
    assert unconfirmed == {
        "creatinine_above_4_5",
        "sepsis_with_instability",
        "hepatic_failure_signs",
        "bullous_dermatitis",
    }
    sbp = protocol.rule("systolic_bp_below_90")
    assert sbp.confirmed and "UNCONFIRMED" in sbp.note
    # Product defaults that no label sets are never presented as label facts.
    assert not protocol.eligibility.max_age.confirmed
    assert not protocol.dosing.weight_max_age.confirmed
    assert protocol.sources[protocol.dosing.weight_adult_min.source].label == "none"


def _line_of(text: str, needle: str) -> int:
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in text")


def _broken(tmp_path: Path, old: str, new: str, count: int = 1) -> tuple[Path, str]:
    assert old in SHIPPED, old
    text = SHIPPED.replace(old, new, count)
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text


def _refused(path: Path) -> list[str]:
    with pytest.raises(ProtocolError) as exc:
        load_protocol(path)
    assert exc.value.exit_code == 2
    lines = [str(i) for i in exc.value.issues]
    for line in lines:
        assert line.startswith(f"{path}:"), line
    return lines


@pytest.mark.parametrize(
    ("old", "new", "marker", "fragment"),
    [
        # unknown key
        (
            "    meaning: verified\n    verifies: [order]",
            "    meaning: verified\n    verfies: [order]",
            "verfies",
            "unknown key 'verfies'",
        ),
        # wrong type
        ('  version: "1.7.0"', "  version: [1, 0]", "version: [1, 0]", "must be text"),
        (
            "    unprimed: true\n    next: infusion_start",
            "    unprimed: sometimes\n    next: infusion_start",
            "unprimed: sometimes",
            "unprimed must be true or false",
        ),
        # missing key
        (
            "    title: Pharmacist verifies the order\n",
            "",
            "id: order_verification",
            "missing required key 'title'",
        ),
        # an "all normal" group whose normal value is a finding a rule holds for
        (
            "normal: {mental_status: normal, lethargy: none",
            "normal: {mental_status: severe_confusion_or_agitation, lethargy: none",
            "    normal_groups:",
            "normal group 'neuro' fires rule 'mental_status_changes'",
        ),
        # an "all normal" value that is not one of the item's options
        (
            "normal: {mental_status: normal, lethargy: none",
            "normal: {mental_status: normal, lethargy: sleepy",
            "lethargy: sleepy",
            "'sleepy' is not a value of choice item 'lethargy'",
        ),
        # dangling step reference
        (
            "    verifies: [order]",
            "    verifies: [ordr]",
            "verifies: [ordr]",
            "'ordr', which does not exist",
        ),
        # dangling role
        (
            "    roles: [pharmacist]\n    meaning: verified\n    verifies: [order]",
            "    roles: [chemist]\n    meaning: verified\n    verifies: [order]",
            "roles: [chemist]",
            "role 'chemist' is not defined",
        ),
        # sittings (signed with one signature): each refused for what it would let slip
        (
            "  - {steps: [pre_infusion, infusion_start]}",
            "  - {steps: [pre_infusion, infusion_stop]}",
            "steps: [pre_infusion, infusion_stop]",
            "'infusion_stop' does not follow 'pre_infusion'",
        ),
        (
            "  - {steps: [pre_infusion, infusion_start]}",
            "  - {steps: [double_check_second, pre_infusion]}",
            "steps: [double_check_second, pre_infusion]",
            "'double_check_second' is one side of an independent double check",
        ),
        (
            "  - {steps: [pre_infusion, infusion_start]}",
            "  - {steps: [hold_checks, reconstitution]}",
            "steps: [hold_checks, reconstitution]",
            "'hold_checks' evaluates rules, so only the last step may",
        ),
        (
            "  - {steps: [pre_infusion, infusion_start]}",
            "  - {steps: [infusion_start, infusion_stop]}",
            "steps: [infusion_start, infusion_stop]",
            "'infusion_start' starts the infusion, so only the last step may",
        ),
        (
            "  - {steps: [pre_infusion, infusion_start]}",
            "  - {steps: [dilution, pharmacy_verification]}",
            "steps: [dilution, pharmacy_verification]",
            "'pharmacy_verification' checks another step of the same sitting",
        ),
        (
            "  - {steps: [pre_infusion, infusion_start]}",
            "  - {steps: [order, order_verification]}",
            "steps: [order, order_verification]",
            "no role may sign every step of it",
        ),
        (
            "  - {steps: [pre_infusion, infusion_start]}",
            "  - {steps: [pre_infusion]}",
            "steps: [pre_infusion]}",
            "a sitting has at least two steps",
        ),
        (
            "  - {steps: [pre_infusion, infusion_start]}",
            "  - {steps: [infusion_stop, observation]}",
            "  - {steps: [infusion_stop, observation]}        # stop",
            "'infusion_stop' is in sittings[2] too",
        ),
        # dangling item in a rule
        (
            "when: {item: spo2_pct, op: lt, value: 90}",
            "when: {item: spo2, op: lt, value: 90}",
            "item: spo2, op: lt",
            "'spo2' is not an item",
        ),
        # dangling source
        (
            "    source: label_current\n  - id: systolic_bp_below_90",
            "    source: label_nope\n  - id: systolic_bp_below_90",
            "source: label_nope",
            "source 'label_nope' is not defined",
        ),
        # dangling next (dead end)
        (
            "    next: pharmacy_verification",
            "    next: pharmacy_verificaton",
            "next: pharmacy_verificaton",
            "neither a step nor a final state",
        ),
        # bad number: negative constant
        (
            "dose_per_kg: {value: 600000,",
            "dose_per_kg: {value: -600000,",
            "value: -600000",
            "must be greater than 0",
        ),
        # bad number: text where a number belongs
        (
            "vial_content: {value: 22000000,",
            "vial_content: {value: lots,",
            "value: lots",
            "must be a number",
        ),
        # wrong unit
        (
            "infusion_duration: {value: 15, unit: min,",
            "infusion_duration: {value: 15, unit: h,",
            "infusion_duration: {value: 15, unit: h",
            "must be 'min'",
        ),
        # min above max
        (
            'type: number, unit: "%", min: 0, max: 100, required: true}\n      - id: mental',
            'type: number, unit: "%", min: 100, max: 0, required: true}\n      - id: mental',
            "min: 100, max: 0",
            "is above max",
        ),
        # bad op
        (
            "when: {item: spo2_pct, op: lt, value: 90}",
            "when: {item: spo2_pct, op: less, value: 90}",
            "op: less",
            "op 'less' is not allowed",
        ),
        # a choice value that is not an option
        (
            "when: {item: lethargy, op: in, value: [moderate, severe]}",
            "when: {item: lethargy, op: in, value: [moderate, sever]}",
            "[moderate, sever]",
            "not among item 'lethargy' options",
        ),
        # unknown meaning
        (
            "    meaning: reviewed\n    evaluates_rules: true",
            "    meaning: witnessed\n    evaluates_rules: true",
            "meaning: witnessed",
            "not a Part 11 signature meaning",
        ),
        # expect pointing nowhere
        (
            "expect: plan.vials,",
            "expect: plan.vial_count,",
            "expect: plan.vial_count",
            "is not a known value",
        ),
        # band table out of order
        (
            "    - max_dose_iu: 60000000",
            "    - max_dose_iu: 20000000",
            "max_dose_iu: 20000000",
            "must be above the previous band",
        ),
        # duplicate key
        (
            "  brand: Proleukin\n",
            "  brand: Proleukin\n  brand: Aldesleukin\n",
            "brand: Aldesleukin",
            "duplicate key 'brand'",
        ),
        # unknown item type
        (
            "type: expiry, required: true}\n      - {id: vial_entry",
            "type: expirydate, required: true}\n      - {id: vial_entry",
            "type: expirydate",
            "type 'expirydate' is not allowed",
        ),
    ],
)
def test_broken_copies_are_refused_with_line_numbers(
    tmp_path: Path, old: str, new: str, marker: str, fragment: str
) -> None:
    path, text = _broken(tmp_path, old, new)
    issues = _refused(path)
    matching = [i for i in issues if fragment in i]
    assert matching, issues
    expected_line = _line_of(text, marker)
    lines = {int(i.split(":")[1]) for i in matching}
    # The issue points at the offending line or at the mapping that lacks the key.
    assert any(abs(n - expected_line) <= 1 for n in lines), (expected_line, matching)


def test_unreachable_step_is_refused(tmp_path: Path) -> None:
    # eligibility now skips hold_checks: hold_checks can never be reached.
    path, _text = _broken(
        tmp_path,
        "    evaluates_rules: true\n    next: hold_checks",
        "    evaluates_rules: true\n    next: reconstitution",
    )
    issues = _refused(path)
    assert any("step 'hold_checks' is unreachable" in i for i in issues), issues


@pytest.mark.parametrize(
    ("route", "fragment"),
    [
        ("", "checked against protocol.route, but the protocol names no route"),
        (
            "  route: subcutaneous\n",
            "protocol.route 'subcutaneous', which is not one of its options (allowed: intravenous)",
        ),
        ("  route: Intra venous\n", "route 'Intra venous' must be a lower_snake_case word"),
    ],
)
def test_a_route_item_needs_the_protocols_route_among_its_options(
    tmp_path: Path, route: str, fragment: str
) -> None:
    path, _ = _broken(tmp_path, "  route: intravenous\n", route)
    issues = _refused(path)
    assert any(fragment in i for i in issues), issues


def test_protocol_route_is_read_and_optional_for_older_texts(
    protocol: Protocol, tmp_path: Path
) -> None:
    assert protocol.route == "intravenous"
    step = protocol.step("double_check_first")
    route = step.item("route")
    assert route is not None and route.expect == "protocol.route"
    # A text from before 1.7.0: no route id and a Route item that expects nothing still loads.
    path, _ = _broken(tmp_path, "  route: intravenous\n", "")
    path.write_text(
        path.read_text(encoding="utf-8").replace(" expect: protocol.route,", ""), encoding="utf-8"
    )
    assert load_protocol(path).route is None


def test_loop_is_refused(tmp_path: Path) -> None:
    path, _ = _broken(tmp_path, "    next: completed", "    next: order")
    issues = _refused(path)
    assert any("loops and never ends" in i for i in issues), issues


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = SHIPPED.replace("verifies: [order]", "verifies: [ordr]").replace(
        "  brand: Proleukin\n", "  brand: Proleukin\n  colour: blue\n"
    )
    path = tmp_path / "two.yaml"
    path.write_text(text)
    issues = _refused(path)
    assert any("ordr" in i for i in issues) and any("colour" in i for i in issues)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty"),
        (b"protocol: [unclosed\n", "not valid YAML"),
        (b"- just\n- a list\n", "must be a mapping"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"protocol: !!python/object:os.system {}\n", "is not allowed"),
        (b"a: &x [*x]\n", "recursive"),
    ],
)
def test_malformed_files(content: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_protocol(content, "bad.yaml")
    assert any(fragment in str(i) for i in exc.value.issues), exc.value.issues


def test_billion_laughs_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 8):
        refs = ", ".join([f"*a{n - 1}"] * 10)
        lines.append(f"a{n}: &a{n} [{refs}]")
    with pytest.raises(ProtocolError) as exc:
        parse_protocol("\n".join(lines).encode(), "laughs.yaml")
    assert any("expands to more than" in str(i) for i in exc.value.issues)


def test_missing_file_is_a_protocol_error(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError) as exc:
        load_protocol(tmp_path / "nope.yaml")
    assert "cannot read" in exc.value.message


@pytest.mark.parametrize(
    ("old", "new", "marker", "fragment"),
    [
        (
            "    warning: dose_not_label_dose\n",
            "    warning: dose_too_low\n",
            "warning: dose_too_low",
            "is not a warning Bedside raises",
        ),
        (
            "    warning: eligibility_test_old\n    step: eligibility\n",
            "    warning: eligibility_test_old\n    step: order\n",
            "    step: order",
            "is never raised at step 'order'",
        ),
        (
            "    item: dose_deviation_reason\n    roles: [prescriber]\n",
            "    item: dose_deviation_reason\n    roles: [nurse]\n",
            "    roles: [nurse]",
            "nurse may not sign step 'order'",
        ),
        (
            "    item: older_result_reason\n",
            "    item: pft_result\n",
            "    item: pft_result",
            "must be an optional text item",
        ),
        (
            "must_be: true, required: true, source: label_current}\n    - {id: no_organ_allograft",
            "must_be: true, required: true}\n    - {id: no_organ_allograft",
            "must_be: true, required: true}",
            "must be a required boolean with must_be: true and a source",
        ),
        (
            "    contraindicated_after: [sustained_vt,",
            "    contraindicated_after: [spo2_below_90,",
            "contraindicated_after: [spo2_below_90",
            "'spo2_below_90' is not a discontinue rule",
        ),
    ],
)
def test_acknowledgements_and_course_start_are_checked_completely(
    tmp_path: Path, old: str, new: str, marker: str, fragment: str
) -> None:
    """Issue 11: the sections that make a prescriber sign are validated before any machine is
    built, each problem with its file and line."""
    path, text = _broken(tmp_path, old, new)
    lines = _refused(path)
    hit = [line for line in lines if fragment in line]
    assert hit, lines
    changed = text[: text.index(new)].count("\n") + 1 + new[: new.index(marker.strip())].count("\n")
    assert any(f":{changed}:" in line for line in hit), (changed, hit)
