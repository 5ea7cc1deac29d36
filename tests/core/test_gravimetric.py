"""Gravimetric verification (issue 16.3): the protocol's optional section and its FILE:LINE
errors, a site's overlay turning it on, the core's judgement of the weighed volume (within or
outside the tolerance, weighed on the balance or typed with a reason), and the compounding
record printing the weights, the volume and the constants, unconfirmed ones said so (read back
from the rendered PDF with pdftotext)."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from decimal import Decimal
from typing import Any

import pytest

from workflow.core.clock import FixedClock
from workflow.core.errors import ProtocolError, StepRefused
from workflow.core.gravimetric import recorded_weighings, volume_ml
from workflow.core.machine import Case
from workflow.core.protocol import Protocol
from workflow.core.protocol.loader import parse_protocol
from workflow.core.protocol.model import Quantity
from workflow.core.protocol.overlay import parse_overlay
from workflow.dev.walk import values_for
from workflow.records.case_records import compounding_record
from workflow.records.render import render
from workflow.resources import default_protocol_path

from .helpers import TECH, open_case, walk_until

HEAD = """\
overlay:
  id: bench-overlay
  name: Site bench overlay
  version: "1.0.0"
  protocol: aldesleukin-high-dose
sources:
  site_sop:
    title: Site compounding SOP
    citation: Test site pharmacy SOP 12, gravimetric checks
    label: none
"""

# The items a site adds with the check: the bag weighed before and after the dose goes in.
ITEMS = """\
add_items:
  - step: dilution
    source: site_sop
    items:
      - {id: dose_added_before_g, label: Bag weight before the dose, type: number,
         unit: g, min: 0, decimals: 3, required: false}
      - {id: dose_added_after_g, label: Bag weight after the dose, type: number,
         unit: g, min: 0, decimals: 3, required: false}
      - id: dose_added_weighed_by
        label: How the bag was weighed
        type: choice
        required: false
        options: [{id: balance, label: Read from the balance}, {id: typed, label: Typed in}]
      - id: dose_added_typed_reason
        label: Why the weights were typed in
        type: choice
        required: false
        required_if: {item: dose_added_weighed_by, op: eq, value: typed}
        options:
          - {id: balance_down, label: Balance not working}
          - {id: no_balance, label: No balance at this bench}
"""


def site(protocol: Protocol, body: str) -> Protocol:
    return parse_overlay((HEAD + textwrap.dedent(body)).encode(), "site.yaml", protocol)


def refused_overlay(protocol: Protocol, body: str) -> str:
    with pytest.raises(ProtocolError) as err:
        site(protocol, body)
    return str(err.value)


@pytest.fixture
def unconfirmed(protocol: Protocol) -> Protocol:
    """On, with the protocol's own (unconfirmed) constants."""
    return site(protocol, ITEMS + "gravimetric:\n  enabled: true\n")


@pytest.fixture
def confirmed(protocol: Protocol) -> Protocol:
    """On, with the site's own sourced constants."""
    return site(
        protocol,
        ITEMS
        + """\
gravimetric:
  enabled: true
  tolerance: {value: 3, unit: "%", source: site_sop}
  specific_gravity:
    reconstituted: {value: 1.02, unit: g/mL, source: site_sop}
""",
    )


def at_dilution(protocol: Protocol, clock: FixedClock) -> Case:
    case = open_case(protocol, clock)
    walk_until(case, "dilution", clock)
    return case


def dilution(case: Case, clock: FixedClock, **weights: Any) -> None:
    clock.advance(minutes=5)
    values = values_for(case, "dilution", clock.now())
    values.update(weights)
    case.sign("dilution", values, TECH, clock.now())


def planned(case: Case) -> Decimal:
    assert case.plan is not None
    return case.plan.reconstituted_volume_ml


def test_the_shipped_protocol_has_the_check_off_with_unconfirmed_constants(
    protocol: Protocol,
) -> None:
    g = protocol.gravimetric
    assert g is not None and not g.enabled
    assert not g.tolerance.confirmed and not g.specific_gravity["reconstituted"].confirmed
    assert g.at("dilution") == ()
    assert protocol.step("dilution").item("dose_added_before_g") is None  # a site adds them


def test_a_bad_section_is_refused_with_file_and_line() -> None:
    text = (
        default_protocol_path()
        .read_text()
        .replace(
            'tolerance: {value: 5, unit: "%"',
            'tolerance: {value: 150, unit: "%"',
        )
        .replace(
            "planned: plan.reconstituted_volume_ml, liquid: reconstituted",
            "planned: plan.dose_iu, liquid: saline",
        )
        .replace("reconstituted: {value: 1.0, unit: g/mL", "reconstituted: {value: 1.0, unit: kg/L")
    )
    with pytest.raises(ProtocolError) as err:
        parse_protocol(text.encode(), "p.yaml")
    message = str(err.value)
    line = next(i + 1 for i, t in enumerate(text.splitlines()) if "planned: plan.dose_iu" in t)
    assert "gravimetric.tolerance must be below 100 %, got 150" in message
    assert "gravimetric.specific_gravity.reconstituted.unit must be 'g/mL'" in message
    assert (
        f"p.yaml:{line}: gravimetric.additions[0].planned: 'plan.dose_iu' is not a planned volume"
        in message
    )
    assert "'saline' has no specific_gravity" in message


def test_turning_it_on_without_the_weight_items_is_refused(protocol: Protocol) -> None:
    message = refused_overlay(protocol, "gravimetric:\n  enabled: true\n")
    assert "site.yaml:" in message
    assert "step 'dilution' needs the item 'dose_added_before_g' (a number in g)" in message
    message = refused_overlay(
        protocol,
        ITEMS + "gravimetric:\n  enabled: true\n  specific_gravity:\n"
        "    d5w: {value: 1.0, unit: g/mL, source: site_sop}\n",
    )
    assert "the protocol weighs no such liquid" in message


def test_within_tolerance_is_signed_and_recorded(confirmed: Protocol, clock: FixedClock) -> None:
    case = at_dilution(confirmed, clock)
    plan_ml = planned(case)
    # 2 % over the plan at the site's specific gravity 1.02: inside its 3 %.
    gained = plan_ml * Decimal("1.02") * Decimal("1.02")
    dilution(
        case,
        clock,
        dose_added_before_g="61.250",
        dose_added_after_g=str((Decimal("61.250") + gained).quantize(Decimal("0.001"))),
        dose_added_weighed_by="balance",
    )
    assert case.state == "pharmacy_verification"
    (w,) = recorded_weighings(case)
    assert w.within and w.weighed_by == "balance" and w.unconfirmed == ()
    assert abs(w.volume_ml - plan_ml * Decimal("1.02")) < Decimal("0.01")


def test_outside_tolerance_is_refused_naming_step_and_volumes(
    unconfirmed: Protocol, clock: FixedClock
) -> None:
    case = at_dilution(unconfirmed, clock)
    plan_ml = planned(case)
    with pytest.raises(StepRefused) as refused:
        dilution(
            case,
            clock,
            dose_added_before_g="60.000",
            dose_added_after_g=str(Decimal("60.000") + plan_ml * Decimal("1.2")),
            dose_added_weighed_by="balance",
        )
    err = refused.value
    assert err.reason == "gravimetric_out_of_tolerance" and err.field == "dose_added_after_g"
    assert "'Dilution in D5W and labelling': Reconstituted dose added to the D5W bag" in err.message
    assert f"planned {plan_ml:.2f} mL" in err.message
    assert f"weighed {plan_ml * Decimal('1.2'):.2f} mL" in err.message
    assert "unconfirmed: specific gravity 1.0000 g/mL, tolerance 5.00 %" in err.message
    assert case.state == "dilution"  # nothing signed
    # Lighter after than before: a swapped pair, refused as such.
    with pytest.raises(StepRefused) as swapped:
        dilution(
            case,
            clock,
            dose_added_before_g="61",
            dose_added_after_g="60",
            dose_added_weighed_by="balance",
        )
    assert swapped.value.reason == "gravimetric_weights"
    # Once on, the weights are required.
    with pytest.raises(StepRefused) as missing:
        dilution(case, clock)
    assert missing.value.field == "dose_added_before_g"


def test_typed_weights_need_a_reason_and_the_record_says_so(
    unconfirmed: Protocol, clock: FixedClock
) -> None:
    case = at_dilution(unconfirmed, clock)
    after = str(Decimal("58.500") + planned(case))
    with pytest.raises(StepRefused) as no_reason:
        dilution(
            case,
            clock,
            dose_added_before_g="58.500",
            dose_added_after_g=after,
            dose_added_weighed_by="typed",
        )
    assert no_reason.value.field == "dose_added_typed_reason"
    dilution(
        case,
        clock,
        dose_added_before_g="58.500",
        dose_added_after_g=after,
        dose_added_weighed_by="typed",
        dose_added_typed_reason="balance_down",
    )
    (w,) = recorded_weighings(case)
    assert w.within and w.typed_reason == "balance_down"
    assert len(w.unconfirmed) == 2
    record = compounding_record(case, "0" * 64)
    assert record is not None
    section = next(s for s in record.sections if s.key == "gravimetric")
    flags = {r.label: r.flag for r in section.rows}
    assert flags["Specific gravity used"] == "UNCONFIRMED"
    assert flags["Tolerance used"] == "UNCONFIRMED"
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) reads the rendered record")
    text = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=render(record), capture_output=True, check=True
    ).stdout.decode()
    assert "Gravimetric verification" in text
    assert "58.500 g" in text and "typed in: Balance not working" in text
    assert f"{planned(case):.2f} mL = (" in text and "/ 1.0000 g/mL" in text
    assert text.count("UNCONFIRMED") >= 2


def test_volume_is_weight_over_specific_gravity() -> None:
    water = Quantity(Decimal("1.02"), "g/mL", "site_sop", True, "")
    assert volume_ml(Decimal("10.000"), Decimal("20.200"), water) == Decimal("10")


def test_the_balance_reply_is_kept_only_when_it_is_the_weight_signed(
    confirmed: Protocol, clock: FixedClock
) -> None:
    """Issue 16 (orders16.5): the balance's reply lines ride in the step's event; the core
    refuses one that is not the weight entered, one for a weight the step does not weigh, or
    one for an addition marked typed; replay checks them again."""
    case = at_dilution(confirmed, clock)
    gained = (planned(case) * Decimal("1.02")).quantize(Decimal("0.001"))
    after = str(Decimal("61.250") + gained)
    clock.advance(minutes=5)
    values = values_for(case, "dilution", clock.now()) | {
        "dose_added_before_g": "61.250",
        "dose_added_after_g": after,
        "dose_added_weighed_by": "balance",
    }
    reply = {"reply": "S S      61.250 g", "serial": "B1", "read_at": "2026-11-02T06:00:00Z"}
    bad = [
        ({"dose_added_before_g": {**reply, "reply": "S S      61.251 g"}}, values),
        ({"dose_added_before_g": {**reply, "reply": "S D      61.250 g"}}, values),
        ({"vial_lot": reply}, values),
        (
            {"dose_added_before_g": reply},
            values | {"dose_added_weighed_by": "typed", "dose_added_typed_reason": "balance_down"},
        ),
    ]
    for readings, entered in bad:
        with pytest.raises(StepRefused) as refused:
            case.sign("dilution", entered, TECH, clock.now(), balance=readings)
        assert refused.value.reason == "balance_reading", readings
    assert case.state == "dilution"  # nothing signed
    event = case.sign("dilution", values, TECH, clock.now(), balance={"dose_added_before_g": reply})
    assert event.data["balance_readings"] == {"dose_added_before_g": reply}
    again = Case.replay(confirmed, case.case_id, case.events)
    assert again.state == case.state
    record = compounding_record(case, "0" * 64)
    assert record is not None
    [grav] = [s for s in record.sections if s.key == "gravimetric"]
    notes = [row.note or "" for row in grav.rows]
    assert "reply 'S S      61.250 g', balance serial B1" in notes[0]
    assert notes[1] == "read from the balance; no balance reply kept"
