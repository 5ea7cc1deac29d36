"""The per-step ``photos`` declaration: loaded from the shipped protocol, refused with FILE:LINE."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow.core.errors import ProtocolError
from workflow.core.protocol import Protocol, load_protocol
from workflow.resources import default_protocol_path

SHIPPED = default_protocol_path().read_text(encoding="utf-8")
VIALS = '      - {id: vials, label: "Vials with their labels", scan: vial}'


def test_shipped_protocol_declares_photos(protocol: Protocol) -> None:
    recon = protocol.step("reconstitution")
    assert [(p.id, p.scan) for p in recon.photos] == [("vials", "vial"), ("syringe", None)]
    assert [p.id for p in protocol.step("dilution").photos] == ["final_bag"]
    assert protocol.step("order").photos == ()


@pytest.mark.parametrize(
    ("new", "fragment"),
    [
        ('      - {id: vials, label: "Vials", scan: ampoule}', "'ampoule' is not a scanned kind"),
        ('      - {id: vial_lot, label: "Vials"}', "photo 'vial_lot' has an item's id"),
        ("      - {id: vials, scan: vial}", "label"),
        ('      - {id: vials, label: "Vials", colour: red}', "colour"),
        ('      - {id: syringe, label: "Vials"}', "photo 'syringe' is listed twice"),
    ],
)
def test_bad_photo_declarations_are_refused_at_their_line(
    tmp_path: Path, new: str, fragment: str
) -> None:
    assert VIALS in SHIPPED
    text = SHIPPED.replace(VIALS, new, 1)
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t == new)
    with pytest.raises(ProtocolError) as exc:
        load_protocol(path)
    issues = [str(i) for i in exc.value.issues]
    assert any(fragment in i for i in issues), issues
    assert any(
        i.startswith(f"{path}:{line}") or i.startswith(f"{path}:{line + 1}") for i in issues
    ), issues
