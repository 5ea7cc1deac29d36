"""The README's "Try it" for the HL7 interface, kept true: the example file it names is sent,
message by message, over a real MLLP socket, and each acknowledgement is the one the README
quotes (a new order for an unknown patient waits for the course start; its DC removes it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from interop.hl7_support import Sender, listener, msa
from interop.support import installation
from workflow.core.protocol import Protocol
from workflow.service import Bedside

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "docs/examples/hl7-order-nw-dc.hl7"


@pytest.fixture
def app(db_url: str, protocol: Protocol) -> Iterator[Bedside]:
    with installation(db_url, protocol) as bedside:
        yield bedside


def quoted_acks() -> list[tuple[str, str, str]]:
    """The MSA segments the README's "Try it" quotes, in order (its lines folded back)."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert EXAMPLE in readme, "the README no longer names the example file"
    found = re.findall(r"`MSA\|(\w+)\|(\w+)\|([^`]+)`", readme)
    assert len(found) == 2, found
    return [(code, control, text) for code, control, text in found]


def test_the_readme_example_orders_are_answered_as_it_says(app: Bedside) -> None:
    # The file keeps one segment per line (mllp_send --loose); a blank line ends a message.
    text = (ROOT / EXAMPLE).read_text(encoding="utf-8")
    messages = ["\r".join(m.split("\n")) for m in text.strip().split("\n\n")]
    assert len(messages) == 2
    with listener(app) as port:
        sender = Sender(port)
        try:
            acks = [msa(sender.send(message)) for message in messages]
        finally:
            sender.close()
    assert acks == quoted_acks()
    patient = app.store.find_patient_by_mrn("MRN-5001")
    assert patient is not None and patient.family_name == "Quist"
    assert app.store.list_cases() == []  # pending, then removed: no dose was ever opened
    assert app.pending_orders() == []
