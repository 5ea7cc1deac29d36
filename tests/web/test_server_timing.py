"""Server-Timing (issue 15.3): a signed step says where its time went, phase by phase."""

from __future__ import annotations

import re

from workflow import timing
from workflow.dev.walk import values_for
from workflow.timing import phase, recording

from .conftest import PASSWORD, Site


def _phases(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+);dur=(\d+\.\d)\s*", part)
        assert m, header
        out[m.group(1)] = float(m.group(2))
    return out


def test_a_step_through_the_api_carries_its_phases(site: Site) -> None:
    view = site.walk_to("hold_checks")
    site.clock.advance(minutes=20)
    client = site.client("n.alvarez")
    body = {
        "expected_version": view.version,
        "values": values_for(view.case, "hold_checks", site.clock.now()),
        "password": PASSWORD,
    }
    r = client.post(f"/api/cases/{view.case.case_id}/steps/hold_checks", json=body)
    assert r.status_code == 200, r.text
    phases = _phases(r.headers["Server-Timing"])
    assert {"load", "auth", "rules", "append", "commit", "total"} <= set(phases)
    # Every phase is inside the request. "commit" adds up every write transaction's commit in
    # the request (the append's, the signing session's, the security log's).
    assert all(phases[name] <= phases["total"] for name in phases)
    assert phases["auth"] > 0


def test_a_page_carries_its_render_time(sqlite_site: Site) -> None:
    client = sqlite_site.client("n.alvarez")
    r = client.get("/")
    assert r.status_code == 200
    phases = _phases(r.headers["Server-Timing"])
    assert "render" in phases and phases["render"] <= phases["total"]


def test_phases_outside_a_request_record_nothing_and_add_up_inside() -> None:
    with phase("append"):  # no request: a no-op, no error
        pass
    with recording() as timings:
        with phase("append"):
            pass
        with phase("append"):
            pass
        with phase("auth"):
            pass
    assert list(timings.phases) == ["append", "auth"]
    assert re.fullmatch(r"append;dur=\d+\.\d, auth;dur=\d+\.\d", timings.header())


def test_counting_cpu_adds_each_phase_s_cpu_beside_its_wall_time() -> None:
    """bench/profile_step.py's switch: off by default, so the header a browser sees is as above."""
    timing.count_cpu(True)
    try:
        with recording() as timings, phase("append"):
            sum(range(1000))
    finally:
        timing.count_cpu(False)
    assert re.fullmatch(r"append;dur=\d+\.\d, append-cpu;dur=\d+\.\d", timings.header())
    with recording() as plain, phase("append"):
        pass
    assert plain.cpu is None and "cpu" not in plain.header()
