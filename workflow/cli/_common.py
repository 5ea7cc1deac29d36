"""Small helpers shared by the command modules."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workflow.core.protocol import Protocol


def protocol_from(args: argparse.Namespace) -> Protocol:
    # Imported here, not at the top: `bedside --help` needs no protocol (start-up, issue 15).
    from workflow.core.protocol import load_protocol
    from workflow.resources import default_protocol_path

    protocol = load_protocol(args.protocol or default_protocol_path())
    overlay = getattr(args, "overlay", None)
    if overlay:
        # Validated like the protocol: a loosening overlay is refused with FILE:LINE lines.
        from workflow.core.protocol.overlay import load_overlay

        protocol = load_overlay(overlay, protocol)
    return protocol


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
