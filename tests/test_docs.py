"""The README documents what the product does: every command exists and every command is
documented; the two set-up commands are the ones CI runs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from workflow.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix}{name}"
                nested = _commands(sub, full + " ")
                found |= nested or {full}
    return found


def test_every_command_is_documented() -> None:
    missing = []
    for command in sorted(_commands(build_parser())):
        top, _, action = command.partition(" ")
        documented = (
            f"bedside {command}" in README
            or (action and re.search(rf"bedside {top} [^`]*\b{action}\b", README))
            or (action and re.search(rf"`{top} {action}\b", README))
        )
        if not documented:
            missing.append(command)
    assert not missing, f"undocumented commands: {missing}"


def test_every_documented_command_exists() -> None:
    known = {c.split(" ")[0] for c in _commands(build_parser())}
    for match in re.finditer(r"`bedside ([a-z]+)", README):
        assert match.group(1) in known, match.group(0)


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    assert "make demo" in README and "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
