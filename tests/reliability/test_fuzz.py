"""Bad input (issue 6.3): mutated protocols and hostile step entries.

* The loader, given any mutation of the shipped protocol (lines deleted, duplicated, swapped,
  re-indented, replaced by noise; bytes flipped; cut short; not UTF-8), either loads it or raises
  the one ProtocolError whose every issue names the file and a line >= 1. Nothing else escapes.
* Every step of a live case, given hostile values (wrong types, huge, control characters,
  NaN, nested containers, unknown keys), either signs or is refused with a BedsideError, and a
  refusal changes nothing: same state, same events. Through the service on a real SQLite store
  as well, where the chains must still verify afterwards.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from workflow.core.clock import FixedClock
from workflow.core.errors import BedsideError, ProtocolError
from workflow.core.machine import Case
from workflow.core.protocol import parse_protocol
from workflow.dev.demo import open_dose, signer_for
from workflow.dev.walk import values_for
from workflow.resources import default_protocol_path

from .conftest import SEED, SOAK, report

SHIPPED = default_protocol_path().read_bytes()
LINES = SHIPPED.decode("utf-8").splitlines(keepends=True)
LOADER_EXAMPLES = 6000 if SOAK else 250
STEP_EXAMPLES = 4000 if SOAK else 250
FILENAME = "fuzzed.yaml"
TRIED = {"loader": 0, "loader_loaded": 0, "steps": 0, "steps_signed": 0}

noise = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=40
)
yaml_bits = st.sampled_from(
    [":", "- ", "  ", "\t", "&a ", "*a", "!!python/object:os.system ", "{", "}", "[", "]", "'",
     '"', "#", "|", ">", "---", "...", "? ", "null", "~", "1e999", "-0", "0x1F", ".nan", "%YAML",
     "<<: *a", "\x00", "\ufeff", "\u202e"]
)  # fmt: skip
line_ops = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, len(LINES) - 1)),
    st.tuples(st.just("duplicate"), st.integers(0, len(LINES) - 1)),
    st.tuples(st.just("swap"), st.integers(0, len(LINES) - 1), st.integers(0, len(LINES) - 1)),
    st.tuples(st.just("indent"), st.integers(0, len(LINES) - 1), st.integers(-4, 4)),
    st.tuples(st.just("replace"), st.integers(0, len(LINES) - 1), noise),
    st.tuples(st.just("insert"), st.integers(0, len(LINES) - 1), st.integers(0, 60), yaml_bits),
    st.tuples(st.just("value"), st.integers(0, len(LINES) - 1), st.one_of(noise, yaml_bits)),
)


def mutate_lines(ops: list[tuple[Any, ...]]) -> bytes:
    lines = list(LINES)
    for op in ops:
        kind, n = op[0], min(op[1], len(lines) - 1)
        if not lines:
            break
        if kind == "delete":
            del lines[n]
        elif kind == "duplicate":
            lines.insert(n, lines[n])
        elif kind == "swap":
            m = min(op[2], len(lines) - 1)
            lines[n], lines[m] = lines[m], lines[n]
        elif kind == "indent":
            lines[n] = " " * op[2] + lines[n] if op[2] >= 0 else lines[n][-op[2] :]
        elif kind == "replace":
            lines[n] = op[2] + "\n"
        elif kind == "insert":
            at = min(op[2], len(lines[n]))
            lines[n] = lines[n][:at] + op[3] + lines[n][at:]
        elif kind == "value" and ":" in lines[n]:
            key = lines[n].split(":", 1)[0]
            lines[n] = f"{key}: {op[2]}\n"
    return "".join(lines).encode("utf-8")


byte_ops = st.lists(
    st.tuples(st.integers(0, len(SHIPPED) - 1), st.integers(0, 255)), min_size=1, max_size=8
)


def check_loader(data: bytes) -> None:
    TRIED["loader"] += 1
    error: ProtocolError | None = None
    try:
        parse_protocol(data, FILENAME)
    except ProtocolError as exc:  # anything else escaping fails the test
        error = exc
    if error is None:
        TRIED["loader_loaded"] += 1
        return
    assert error.issues, "a ProtocolError must list at least one issue"
    for issue in error.issues:
        assert issue.file == FILENAME, issue
        assert isinstance(issue.line, int) and issue.line >= 1, issue
        assert issue.message.strip(), issue
    assert error.exit_code == 2


@seed(SEED)
@settings(
    max_examples=LOADER_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(line_ops, min_size=1, max_size=6))
def test_mutated_protocol_lines_yield_only_protocol_errors_with_lines(
    ops: list[tuple[Any, ...]],
) -> None:
    check_loader(mutate_lines(ops))


@seed(SEED)
@settings(max_examples=LOADER_EXAMPLES // 2, deadline=None)
@given(byte_ops, st.integers(0, len(SHIPPED)))
def test_mutated_protocol_bytes_yield_only_protocol_errors_with_lines(
    flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(SHIPPED[: max(cut, 1)])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    check_loader(bytes(data))


# -- step inputs ----------------------------------------------------------------------------

START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
hostile_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    noise,
    st.sampled_from(
        ["", " ", "NaN", "Infinity", "-0", "1e400", "0x10", "１２", "٣", "2026-02-30",
         "2026-11-02T06:00", "9999-12-31T23:59Z", "0001-01-01", "<script>alert(1)</script>",
         "'; DROP TABLE events; --", "x" * 100_000, "\x00\x01\x1b[31m",
         "sterile_water_for_injection "]
    ),
)  # fmt: skip
hostile_value = st.one_of(
    hostile_scalar,
    st.lists(hostile_scalar, max_size=3),
    st.dictionaries(st.text(max_size=5), hostile_scalar, max_size=3),
)


def case_at(step_id: str) -> tuple[Case, FixedClock]:
    """A fresh case whose next step is ``step_id``, walked with correct entries."""
    from workflow.core.protocol import load_protocol

    protocol = _PROTOCOL.get("p") or _PROTOCOL.setdefault("p", load_protocol(SHIPPED_PATH))
    clock = FixedClock(START)
    case = open_dose(protocol, [], clock, "fuzz-course")
    while (step := case.next_step()) is not None and step.id != step_id:
        clock.advance(minutes=10)
        case.sign(step.id, values_for(case, step.id, clock.now()), signer_for(step.id), clock.now())
    return case, clock


SHIPPED_PATH: Path = default_protocol_path()
_PROTOCOL: dict[str, Any] = {}
STEP_IDS = [
    "order_verification", "eligibility", "hold_checks", "reconstitution", "dilution",
    "pharmacy_verification", "double_check_first", "double_check_second", "pre_infusion",
    "infusion_start", "infusion_stop", "observation", "record_sign_off",
]  # fmt: skip
_CASES: dict[str, tuple[Case, FixedClock]] = {}


@seed(SEED)
@settings(max_examples=STEP_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(STEP_IDS),
    st.data(),
)
def test_hostile_step_values_are_refused_cleanly(step_id: str, data: st.DataObject) -> None:
    if step_id not in _CASES:
        _CASES[step_id] = case_at(step_id)
    case, clock = _CASES[step_id]
    # Start from the correct entries and spoil some of them, add unknown keys, or drop some.
    good = values_for(case, step_id, clock.now())
    values: dict[str, Any] = dict(good)
    for key in data.draw(st.lists(st.sampled_from(sorted(good) or ["x"]), max_size=4)):
        values[key] = data.draw(hostile_value)
    for key in data.draw(st.lists(st.sampled_from(sorted(good) or ["x"]), max_size=2)):
        values.pop(key, None)
    if data.draw(st.booleans()):
        values[data.draw(st.text(min_size=1, max_size=30))] = data.draw(hostile_value)
    before = (case.state, len(case.events))
    TRIED["steps"] += 1
    try:
        event = case.sign(step_id, values, signer_for(step_id), clock.now())
    except BedsideError:
        assert (case.state, len(case.events)) == before, "a refusal changed the case"
        return
    TRIED["steps_signed"] += 1
    assert event.step == step_id
    # A signed hostile entry must still replay to the same state; then start over for this step.
    replayed = Case.replay(case.protocol, case.case_id, case.events)
    assert replayed.state == case.state
    del _CASES[step_id]


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Any:
    yield
    report(
        f"FIGURES fuzzing: seed {SEED}, {TRIED['loader']} mutated protocols "
        f"({TRIED['loader_loaded']} still valid, the rest one ProtocolError with lines), "
        f"{TRIED['steps']} hostile step entries ({TRIED['steps_signed']} accepted as valid, "
        "the rest refused with nothing changed)"
    )
