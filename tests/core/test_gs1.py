"""GS1 scanning: every form a scanner types, every refusal reason, typed entry with a reason
code, and the scan-failure report by reason, user and ward."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from interop.support import installation, new_course, open_and_order, reopen, step, walk

from workflow.core.errors import InputError, StepRefused
from workflow.core.gs1 import parse_scan, scan_to_values, typed_values
from workflow.core.protocol import Protocol, load_protocol
from workflow.core.protocol.overlay import load_overlay
from workflow.interop.scan_report import format_report, scan_failure_report
from workflow.service import Bedside, CaseView

NOW = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
# Test GTINs with valid check digits (made up: no retrieved source gives a real product GTIN).
VIAL = "09312345678907"
WATER = "00012345600012"
BAG = "00614141000036"
GS = "\x1d"

FORMULARY = f"""\
overlay: {{id: f, name: Formulary, version: "1", protocol: aldesleukin-high-dose}}
sources:
  pharmacy_formulary: {{title: Pharmacy formulary, citation: Test site formulary, label: none}}
formulary:
  - {{gtin: "{VIAL}", kind: vial, description: test vial, source: pharmacy_formulary,
     confirmed: false}}
  - {{gtin: "{WATER}", kind: diluent, description: test water, source: pharmacy_formulary}}
  - {{gtin: "{BAG}", kind: d5w, description: test bag, source: pharmacy_formulary}}
"""


@pytest.fixture
def site(protocol: Protocol, tmp_path: Path) -> Protocol:
    # A real file: an installation stores the overlay's text so its cases replay on it.
    path = tmp_path / "formulary.yaml"
    path.write_text(FORMULARY)
    return load_overlay(path, protocol)


@pytest.mark.parametrize(
    "text",
    [
        f"01{VIAL}17270531" + "10PLK2291",  # fixed-length fields first: no separator needed
        f"01{VIAL}10PLK2291{GS}17270531",  # FNC1 sent as the group separator
        f"]d201{VIAL}10PLK2291{GS}17270531",  # with the DataMatrix symbology identifier
        f"{GS}01{VIAL}10PLK2291{GS}17270531",  # leading FNC1
        f"01{VIAL}10PLK2291<GS>17270531",  # a scanner set to send a visible stand-in
        f"01{VIAL}10PLK2291\u241d17270531",  # the control picture for GS
        f"(01){VIAL}(17)270531(10)PLK2291",  # the human-readable form
        f"01{VIAL}17270531" + "10PLK2291\r\n",  # trailing Enter from keyboard mode
    ],
)
def test_every_scanner_form_parses(text: str) -> None:
    scan = parse_scan(text)
    assert (scan.gtin, scan.lot, scan.expiry) == (VIAL, "PLK2291", date(2027, 5, 31))


def test_day_00_means_the_end_of_the_month() -> None:
    assert parse_scan(f"01{VIAL}17270200" + "10A1").expiry == date(2027, 2, 28)


def test_scan_fills_the_step_values(site: Protocol) -> None:
    values = scan_to_values(site, "vial", f"01{VIAL}17270531" + "10PLK2291", NOW)
    assert values == {
        "vial_lot": "PLK2291",
        "vial_expiry": "2027-05-31",
        "vial_gtin": VIAL,
        "vial_entry": "scanned",
        "vial_scan": f"01{VIAL}17270531" + "10PLK2291",
    }
    bag = scan_to_values(site, "d5w", f"01{BAG}10D5W7731{GS}17270101", NOW)
    assert bag["d5w_entry"] == "scanned" and bag["d5w_lot"] == "D5W7731"
    water = scan_to_values(site, "diluent", f"01{WATER}17270101" + "10SW1", NOW)
    assert water["diluent_gtin"] == WATER


@pytest.mark.parametrize(
    ("prefix", "text", "reason"),
    [
        ("vial", f"01{VIAL}17261101" + "10OLD1", "expired"),  # expired the day before NOW
        ("vial", f"01{BAG}17270531" + "10X", "unknown_product"),  # a bag GTIN is not a vial
        ("vial", "00614141000037", "unknown_product"),  # formulary lacks it... see below
        ("vial", "hello world", "unreadable"),
        ("vial", "", "unreadable"),
        ("vial", f"01{VIAL[:-1]}8" + "17270531" + "10X", "unreadable"),  # bad check digit
        ("vial", f"01{VIAL}10PLK2291", "unreadable"),  # no expiry
        ("vial", f"01{VIAL}10PLK229117270531", "unreadable"),  # missing GS: expiry swallowed
        ("d5w", f"01{VIAL}17270531" + "10X", "unknown_product"),
    ],
)
def test_refusals_name_their_reason(site: Protocol, prefix: str, text: str, reason: str) -> None:
    if text == "00614141000037":
        text = "0100614141000043" + "17270531" + "10L"  # a valid GTIN nobody listed
    with pytest.raises(StepRefused) as err:
        scan_to_values(site, prefix, text, NOW)
    assert err.value.reason == reason
    assert err.value.field is not None


def test_without_a_formulary_every_product_is_unknown(protocol: Protocol) -> None:
    with pytest.raises(StepRefused, match="the institution lists none") as err:
        scan_to_values(protocol, "vial", f"01{VIAL}17270531" + "10A", NOW)
    assert err.value.reason == "unknown_product"


def test_typed_entry_needs_a_reason_code(protocol: Protocol) -> None:
    values = typed_values(
        protocol, "vial", lot="PLK2291", expiry="2027-05", reason="unreadable_label"
    )
    assert values["vial_entry"] == "typed"
    assert values["vial_typed_reason"] == "unreadable_label"
    with pytest.raises(InputError, match="vial_typed_reason"):
        typed_values(protocol, "vial", lot="X", expiry="2027-05", reason="lazy")
    d5w = typed_values(protocol, "d5w", lot="D1", expiry="2027-05", reason="no_barcode")
    assert d5w["d5w_typed_reason"] == "no_barcode"


def test_scanned_and_typed_entries_are_signed_and_reported(db_url: str, site: Protocol) -> None:
    with installation(db_url, site) as app:
        cases = []
        for ward, typed in (("4 West", "scanner_down"), ("4 West", None), ("ICU", "no_barcode")):
            view = walk(
                app,
                open_and_order(app, new_course(app, f"MRN-{len(cases)}"), ward=ward),
                until="reconstitution",
            )
            now = app.clock.now()
            if typed:
                vial = typed_values(site, "vial", lot="PLK1", expiry="2027-05-31", reason=typed)
            else:
                vial = scan_to_values(site, "vial", f"01{VIAL}17270531" + "10PLK1", now)
            water = typed_values(
                site, "diluent", lot="SW1", expiry="2027-05", reason="unreadable_label"
            )
            view = step(app, view, **vial, **water)
            cases.append(view.case)
            assert view.case.current["reconstitution"].values["vial_entry"] == (
                "typed" if typed else "scanned"
            )
        report = scan_failure_report(cases)
        assert report["total"] == 5
        assert report["by_reason"] == {"no_barcode": 1, "scanner_down": 1, "unreadable_label": 3}
        assert report["by_ward"] == {"4 West": 3, "ICU": 2}
        assert report["by_user"] == {"Tomas Mensah, CPhT": 5}
        assert report["by_item"] == {"diluent": 3, "vial": 2}
        text = format_report(report)
        assert "scanner_down" in text and "ICU" in text


def _reconstitution(app: Bedside, mrn: str) -> CaseView:
    return walk(app, open_and_order(app, new_course(app, mrn)), until="reconstitution")


def test_scanned_needs_the_scan_and_the_scan_must_agree(db_url: str, site: Protocol) -> None:
    """'Scanned' cannot be claimed for values typed by hand: the scan is kept with the entry and
    re-read by the case machine (a readable, unexpired, listed product saying the same)."""
    with installation(db_url, site) as app:
        view = _reconstitution(app, "MRN-S1")
        version = view.version
        code = f"01{VIAL}17270531" + "10PLK1"
        refusals = [
            # "Scanned", with lot and expiry typed, and no scan to show for it.
            (
                {"vial_scan": None, "vial_lot": "PLK1", "vial_expiry": "2027-05-31"},
                "missing_item",
                "vial_scan",
            ),
            ({"vial_scan": f"01{VIAL}17261101" + "10PLK1"}, "expired", "vial_scan"),
            ({"vial_scan": f"01{BAG}17270531" + "10PLK1"}, "unknown_product", "vial_scan"),
            ({"vial_scan": "not a barcode"}, "unreadable", "vial_scan"),
            ({"vial_scan": code, "vial_lot": "OTHER9"}, "scan_mismatch", "vial_lot"),
            ({"vial_scan": code, "vial_expiry": "2027-06-30"}, "scan_mismatch", "vial_expiry"),
            ({"vial_scan": code, "vial_gtin": WATER}, "scan_mismatch", "vial_gtin"),
        ]
        # The walk's own vial values are cleared: each case below says only what it tests.
        blank = {"vial_entry": "scanned", "vial_gtin": "", "vial_lot": "", "vial_expiry": ""}
        for overrides, reason, field in refusals:
            with pytest.raises(StepRefused) as err:
                step(app, view, **{**blank, **overrides})
            assert (err.value.reason, err.value.field) == (reason, field), overrides
            assert app.load(view.case.case_id).version == version  # nothing stored
        # Only "scanned" and the code: GTIN, lot and expiry come from the scan.
        done = step(app, view, **blank, vial_scan=code)
        entry = done.case.current["reconstitution"].values
        assert (entry["vial_gtin"], entry["vial_lot"], entry["vial_scan"]) == (VIAL, "PLK1", code)
        assert entry["vial_expiry"].date() == date(2027, 6, 1)  # usable through 31 May
        # Replay from the store gives the same entry.
        again = app.load(done.case.case_id).case.current["reconstitution"].values
        assert again == entry


def test_the_kept_scan_is_one_printable_line(site: Protocol) -> None:
    values = scan_to_values(site, "vial", f"]d201{VIAL}10PLK2291{GS}17270531\r\n", NOW)
    assert values["vial_scan"] == f"]d201{VIAL}10PLK2291<GS>17270531"
    assert parse_scan(values["vial_scan"]).lot == "PLK2291"


def test_without_a_formulary_the_walk_types_vials_in_and_the_report_says_why(
    db_url: str, protocol: Protocol
) -> None:
    with installation(db_url, protocol) as app:
        view = walk(app, _reconstitution(app, "MRN-S2"), until="dilution")
        entry = view.case.current["reconstitution"].values
        assert (entry["vial_entry"], entry["vial_typed_reason"]) == ("typed", "unknown_product")
        assert "vial_scan" not in entry
        report = scan_failure_report([view.case])
        assert report["by_reason"] == {"unknown_product": 1}


def test_a_case_begun_before_scans_were_kept_carries_on(
    db_url: str, protocol: Protocol, tmp_path: Path
) -> None:
    """Cases pinned to protocol 1.1.0 (no ``*_scan`` items, no ``unknown_product`` reason) are
    walked on after the upgrade: typed in with a reason that version has."""
    text = Path(protocol.path).read_text()
    text = text.replace(", {id: unknown_product, label: Product not in the formulary}", "")
    text = "\n".join(line for line in text.splitlines() if "_scan, label" not in line)
    text = text.replace(f'version: "{protocol.version}"', 'version: "1.1.0"')
    old_path = tmp_path / "aldesleukin-1.1.0.yaml"
    old_path.write_text(text + "\n")
    older = load_protocol(old_path)
    assert older.step("reconstitution").item("vial_scan") is None
    with installation(db_url, older) as app:
        running = walk(app, open_and_order(app, new_course(app, "MRN-OLD")), until="hold_checks")
        upgraded = reopen(app, protocol)
        done = walk(upgraded, upgraded.load(running.case.case_id))
        assert done.case.state == "completed" and done.case.protocol.version == "1.1.0"
        entry = done.case.current["reconstitution"].values
        assert (entry["vial_entry"], entry["vial_typed_reason"]) == ("typed", "no_barcode")
