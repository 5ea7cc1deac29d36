"""Sample record documents for the records tests and bench: ordinary, hostile and long."""

from __future__ import annotations

from typing import Any

from workflow.core.events import sha256_hex
from workflow.records.document import (
    ProtocolRef,
    RecordDocument,
    Row,
    Section,
    SignatureManifestation,
    Table,
)

HOSTILE_NAME = "<script>alert(1)</script> <b>& O'Brien-Łukasiewicz"
LONG_NAME = (
    "Maximiliana Alexandrina Konstantinopoulou-Vanderbilt-Featherstonehaugh de la "
    "Cruz y Montenegro-Oyelaran Nakamura-Schwarzenegger"
)


def _events(n: int) -> list[dict[str, Any]]:
    return [
        {
            "case_id": "CASE-0001",
            "seq": i,
            "type": "step_signed" if i % 3 == 0 else "assessment",
            "at": f"2025-03-01T08:{i % 60:02d}:00.000000Z",
            "data": {"value": str(i), "note": "<b>&</b>"},
        }
        for i in range(1, n + 1)
    ]


def _sig(name: str, role: str, meaning: str, minute: int) -> SignatureManifestation:
    return SignatureManifestation(
        printed_name=name,
        role=role,
        signed_at_utc=f"2025-03-01 08:{minute:02d}:00 UTC",
        meaning=meaning,
        content_hash=sha256_hex(f"{name}{minute}".encode()),
    )


def compounding(*, rows: int = 8, patient: str = "Jane Q. Doe", events: int = 12) -> RecordDocument:
    extra = tuple(
        Row(f"Extra check {i}", f"value {i} " * (1 + i % 7), note=None if i % 4 else "see SOP 12")
        for i in range(rows)
    )
    return RecordDocument(
        kind="compounding",
        title="Aldesleukin 42 million IU in D5W 50 mL",
        record_id="REC-2025-0001-C",
        case_id="CASE-0001",
        drug="Aldesleukin (Proleukin) 22 million IU vial",
        subject=(
            ("Patient", patient),
            ("MRN", "MRN-00012345"),
            ("Date of birth", "1961-07-04"),
            ("Weight", "70 kg"),
        ),
        sections=(
            Section(
                "order",
                "Order",
                rows=(
                    Row("Dose", "600,000 IU/kg = 42,000,000 IU (2.567 mg)"),
                    Row("Schedule", "Every 8 hours, dose 3 of 14, cycle 1 day 1"),
                ),
            ),
            Section(
                "ingredients",
                "Ingredients",
                tables=(
                    Table(
                        "ingredients",
                        "Ingredients used",
                        ("Ingredient", "Manufacturer", "Lot", "Expiry", "Amount"),
                        (
                            ("Aldesleukin 22 MIU vial", "Iovance", "L12345", "2026-01", "2 vials"),
                            (
                                "Sterile Water for Injection",
                                "Hospira",
                                "SW998",
                                "2027-05",
                                "2.4 mL",
                            ),
                            ("D5W 50 mL PVC bag", "Baxter", "D5-771", "2026-11", "1 bag"),
                        ),
                    ),
                ),
            ),
            Section(
                "calculations",
                "Calculations",
                rows=(
                    Row("Reconstituted volume", "42 MIU / 18 MIU per mL = 2.333 mL"),
                    Row("Final concentration", "49.0 mcg/mL (window 30-70)"),
                    Row(
                        "Line flush",
                        "50 mL D5W before and after",
                        flag="UNCONFIRMED",
                        note="Manufacturer FAQ practice, not label text",
                    ),
                ),
            ),
            Section(
                "reconstitution",
                "Reconstitution",
                rows=(Row("Diluent", "1.2 mL SWFI per vial, against the vial wall, swirled"),),
            ),
            Section("dilution", "Dilution", rows=(Row("Bag", "D5W 50 mL"),)),
            Section("label", "Label", rows=(Row("Beyond-use", "2025-03-03 08:00 UTC"),)),
            Section(
                "qa", "QA", rows=(Row("Visual inspection", "Clear, colourless, no particles"),)
            ),
            Section(
                "verification",
                "Verification",
                rows=extra,
                tables=(
                    Table(
                        "double_check",
                        "Independent double check",
                        ("Item", "Checker 1", "Checker 2"),
                        (
                            ("Dose", "42,000,000 IU", "42,000,000 IU"),
                            ("Volume", "2.333 mL", "2.333 mL"),
                        ),
                    ),
                ),
            ),
            Section(
                "deviations",
                "Deviations",
                rows=(
                    Row(
                        "Deviation 1",
                        "Bag label reprinted",
                        flag="deviation",
                        note="Printer jam; first label destroyed",
                    ),
                ),
            ),
        ),
        signatures=(
            _sig("Pat Pharmtech", "pharmacy technician", "performed", 10),
            _sig("Dr. Ada Pharmacist", "pharmacist", "verified", 20),
        ),
        protocol=ProtocolRef("Aldesleukin high-dose", "2025.1", sha256_hex(b"protocol")),
        chain_hash=sha256_hex(b"chain"),
        events=_events(events),
    )


def administration(*, patient: str = "Jane Q. Doe") -> RecordDocument:
    return RecordDocument(
        kind="administration",
        title="Aldesleukin 42 million IU IV over 15 minutes",
        record_id="REC-2025-0001-A",
        case_id="CASE-0001",
        drug="Aldesleukin (Proleukin)",
        subject=(("Patient", patient), ("MRN", "MRN-00012345"), ("Date of birth", "1961-07-04")),
        sections=(
            Section(
                "identification",
                "Identification",
                rows=(Row("Identifier 1", "Name, wristband"), Row("Identifier 2", "DOB")),
            ),
            Section(
                "double_check",
                "Double check",
                tables=(
                    Table(
                        "double_check",
                        "Blinded independent double check",
                        ("Item", "Nurse 1", "Nurse 2"),
                        tuple(
                            (item, a, a)
                            for item, a in (
                                ("Drug", "Aldesleukin"),
                                ("Dose", "42,000,000 IU"),
                                ("Pump rate", "209.3 mL/h"),
                                ("Route", "IV, no in-line filter"),
                            )
                        ),
                    ),
                ),
            ),
            Section(
                "infusion",
                "Infusion",
                rows=(
                    Row("Started", "2025-03-01 10:00 UTC"),
                    Row("Stopped", "2025-03-01 10:15 UTC"),
                ),
            ),
            Section(
                "ward_notes",
                "Ward notes (not in the layout)",
                rows=(Row("Note", "Patient asked for a blanket."),),
            ),
        ),
        signatures=(
            _sig("Nurse One " + patient[:0], "registered nurse", "performed", 15),
            _sig("Nurse Two", "registered nurse", "verified", 16),
        ),
        protocol=ProtocolRef("Aldesleukin high-dose", "2025.1", sha256_hex(b"protocol")),
        chain_hash=sha256_hex(b"chain2"),
        events=_events(5),
    )


def hostile_long() -> RecordDocument:
    """Markup in names, very long unbroken words, a huge note and 70 rows: spans pages."""
    base = compounding(rows=70, patient=HOSTILE_NAME + " " + LONG_NAME)
    huge = ("Lorem ipsum <i>dolor</i> & sit amet; " * 400).strip()
    long_word = "X" * 600
    sections = (
        *base.sections,
        Section(
            "free_text",
            "Free text " + HOSTILE_NAME,
            rows=(
                Row(HOSTILE_NAME, long_word, note=HOSTILE_NAME),
                Row("Huge note", "see note", note=huge),
                Row("Line\nbreaks", "first line\nsecond line\x00\x07 control chars"),
            ),
        ),
    )
    return RecordDocument(
        kind=base.kind,
        title=base.title + " " + LONG_NAME,
        record_id=base.record_id,
        case_id=base.case_id,
        drug=base.drug,
        subject=(*base.subject, ("Allergy note " + LONG_NAME, LONG_NAME * 3)),
        sections=sections,
        signatures=(
            *base.signatures,
            SignatureManifestation(
                HOSTILE_NAME + " " + LONG_NAME,
                "pharmacist <i>",
                "2025-03-01 09:00:00 UTC",
                "approved",
                sha256_hex(b"x"),
            ),
        ),
        protocol=base.protocol,
        chain_hash=base.chain_hash,
        events=[*base.events, {"note": HOSTILE_NAME}],
    )
