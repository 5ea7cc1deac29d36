"""Fixtures for the records tests: real keys, real PDFs, no mocks.

Key generation and rendering are done once per session: they are the slow parts, and every
test only reads them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import record_samples

from workflow.records import pki
from workflow.records.document import RecordDocument
from workflow.records.render import render
from workflow.records.sign import sign_pdf


@pytest.fixture(scope="session")
def site_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site") / "pki"
    pki.create_site_pki(folder, organisation="General Hospital")
    return folder


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("other") / "pki"
    pki.create_site_pki(folder, organisation="General Hospital")  # same name, other keys
    return folder


@pytest.fixture(scope="session")
def signer(site_pki: Path) -> pki.RecordSigner:
    return pki.load_signer(site_pki)


@pytest.fixture(scope="session")
def roots(site_pki: Path) -> list[object]:
    return list(pki.load_trust_roots(site_pki))


@pytest.fixture(scope="session")
def compounding_doc() -> RecordDocument:
    return record_samples.compounding()


@pytest.fixture(scope="session")
def compounding_pdf(compounding_doc: RecordDocument) -> bytes:
    return render(compounding_doc)


@pytest.fixture(scope="session")
def hostile_doc() -> RecordDocument:
    return record_samples.hostile_long()


@pytest.fixture(scope="session")
def hostile_pdf(hostile_doc: RecordDocument) -> bytes:
    return render(hostile_doc)


@pytest.fixture(scope="session")
def signed_pdf(compounding_pdf: bytes, signer: pki.RecordSigner) -> bytes:
    return sign_pdf(compounding_pdf, signer, reason="compounding")
