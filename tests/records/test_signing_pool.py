"""Records rendered and signed in a worker process are the records the server would make, and
a lost worker never loses a record."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from record_samples import administration

from workflow.records.pki import create_site_pki, load_trust_roots
from workflow.records.render import render
from workflow.records.signing_pool import SigningPool
from workflow.records.verify import Verifier


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site") / "pki"
    create_site_pki(folder, organisation="Pool test site")
    return folder


@pytest.fixture(scope="module")
def pool(pki: Path) -> Iterator[SigningPool]:
    p = SigningPool(pki)
    p.start()
    try:
        yield p
    finally:
        p.close()


def test_a_document_crosses_to_the_worker_unchanged() -> None:
    document = administration()
    again = pickle.loads(pickle.dumps(document))
    assert again == document
    assert again.record_hash() == document.record_hash()
    assert again.events_json == document.events_json
    assert render(again) == render(document)  # byte-identical before signing


def test_the_worker_signs_a_record_that_verifies(pool: SigningPool, pki: Path) -> None:
    pdf = pool.render_and_sign(administration())
    result = Verifier(list(load_trust_roots(pki))).verify(pdf, None)
    assert result.ok, result.to_dict()
    assert pool.worker_pids() and os.getpid() not in pool.worker_pids()
    assert pool.fallbacks == 0


def test_a_killed_worker_is_replaced_and_the_record_still_made(pki: Path) -> None:
    p = SigningPool(pki)
    p.start()
    try:
        (victim,) = p.worker_pids()
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.2)
        pdf = p.render_and_sign(administration())  # made here, not lost
        assert Verifier(list(load_trust_roots(pki))).verify(pdf, None).ok
        assert p.fallbacks == 1
        pdf = p.render_and_sign(administration())  # by a new worker again
        assert Verifier(list(load_trust_roots(pki))).verify(pdf, None).ok
        assert p.fallbacks == 1 and p.worker_pids() and victim not in p.worker_pids()
    finally:
        p.close()
    assert p.worker_pids() == []


def test_a_worker_does_not_outlive_a_killed_server(pki: Path) -> None:
    """SIGKILL gives the server no chance to shut its pool down: the worker notices its
    parent is gone and exits, so kills (the crash campaign's 50) leave no stray processes."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from workflow.records.signing_pool import SigningPool\n"
        "pool = SigningPool(Path(sys.argv[1]))\n"
        "pool.start()\n"
        "print(pool.worker_pids()[0], flush=True)\n"
        "time.sleep(60)\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code, str(pki)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        worker = int(server.stdout.readline())
        assert _alive(worker)
        server.kill()
        server.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), f"signing worker {worker} outlived its server"
    finally:
        if server.poll() is None:
            server.kill()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing
