"""The newcomer's path (issue 12.9): `bedside demo` says how to see its doses in a browser, and
`bedside demo --serve` walks the demo dose, then serves the same home with the demo people."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from workflow.cli._demo import browser_hint
from workflow.dev.demo import DEMO_PASSWORD

from .test_quickstart import free_port

BEDSIDE = Path(sys.executable).with_name("bedside")


def test_the_demo_ends_by_saying_how_to_see_its_doses_in_a_browser(tmp_path: Path) -> None:
    lines = browser_hint(argparse.Namespace(host="127.0.0.1", port=8000), tmp_path, serving=False)
    text = "\n".join(lines)
    assert f"--home {tmp_path} serve" in text
    assert "http://127.0.0.1:8000/" in text and DEMO_PASSWORD in text
    assert "dr.okafor (prescriber)" in text and "n.alvarez (nurse)" in text


def test_demo_serve_walks_the_dose_then_serves_it(tmp_path: Path) -> None:
    port = free_port()
    argv = [str(BEDSIDE), "--home", str(tmp_path / "home"), "demo", "--serve", "--port", str(port)]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 300  # a guard against a hang, not a timing assertion
        while not any(line.startswith("demo site:") for line in seen):
            line = server.stdout.readline()
            assert line or server.poll() is None, "".join(seen)
            seen.append(line)
            assert time.monotonic() < deadline, "".join(seen)
        banner = "".join(seen)
        assert "dose 1 (cycle 1, dose 1)" in banner and ": completed" in banner
        assert f"open http://127.0.0.1:{port}/" in banner and DEMO_PASSWORD in banner
        rows = ward_rows(f"http://127.0.0.1:{port}")
        assert [r["stage_title"] for r in rows] == ["Completed today"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def ward_rows(base: str) -> list[dict[str, object]]:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    login = json.dumps({"username": "n.alvarez", "password": DEMO_PASSWORD}).encode()
    request = urllib.request.Request(
        base + "/api/session", data=login, headers={"content-type": "application/json"}
    )
    deadline = time.monotonic() + 60
    while True:  # the banner is printed just before uvicorn binds the port
        try:
            opener.open(request)
            break
        except urllib.error.URLError:
            assert time.monotonic() < deadline, "the demo site never listened"
            time.sleep(0.2)
    rows: list[dict[str, object]] = json.load(opener.open(base + "/api/ward"))
    return rows
