"""The application service: the one door the web and the command line go through.

:class:`Bedside` (``bedside.py``, with its jobs in the modules beside it) loads a case's events,
checks who is signing, lets the Case judge, and appends with optimistic concurrency; when a case
ends its records are built, signed and archived. The web and the command line call it and use
the data types of ``vocabulary.py``; they never import ``workflow.store`` or
``workflow.identity`` (an import-linter contract in pyproject.toml).

Light to import: ``import workflow.cli`` loads ``workflow.service.vocabulary`` and
``workflow.service.home`` early, so this package names its public parts lazily (PEP 562): the
service itself (SQLAlchemy, pyHanko) loads on first use. mypy reads the TYPE_CHECKING imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workflow.service._lazy import lazy_exports

if TYPE_CHECKING:
    from workflow.service.bedside import Bedside, open_bedside
    from workflow.service.records_later import RecordsWriter
    from workflow.service.views import (
        ADMINISTRATION_RECORD,
        FORMULARY_MEANING,
        FORMULARY_ROLE,
        FORMULARY_SOURCE,
        OPENING_ROLES,
        RECORDS_ARCHIVED,
        RECORDS_FAILED,
        RECORDS_PENDING,
        BoardRow,
        CaseRecords,
        CaseView,
        CatchUp,
        InterfaceEvent,
        NextDue,
        PendingOrderView,
        PharmacyQueue,
        Proof,
        SittingEntry,
        StepCount,
        gs1_check_digit_ok,
        patient_ref,
    )

_WHERE = {
    "ADMINISTRATION_RECORD": "workflow.service.views",
    "Bedside": "workflow.service.bedside",
    "BoardRow": "workflow.service.views",
    "CaseRecords": "workflow.service.views",
    "CaseView": "workflow.service.views",
    "RECORDS_ARCHIVED": "workflow.service.views",
    "RECORDS_FAILED": "workflow.service.views",
    "RECORDS_PENDING": "workflow.service.views",
    "RecordsWriter": "workflow.service.records_later",
    "SittingEntry": "workflow.service.views",
    "CatchUp": "workflow.service.views",
    "FORMULARY_MEANING": "workflow.service.views",
    "FORMULARY_ROLE": "workflow.service.views",
    "FORMULARY_SOURCE": "workflow.service.views",
    "InterfaceEvent": "workflow.service.views",
    "NextDue": "workflow.service.views",
    "PendingOrderView": "workflow.service.views",
    "OPENING_ROLES": "workflow.service.views",
    "PharmacyQueue": "workflow.service.views",
    "StepCount": "workflow.service.views",
    "Proof": "workflow.service.views",
    "gs1_check_digit_ok": "workflow.service.views",
    "open_bedside": "workflow.service.bedside",
    "patient_ref": "workflow.service.views",
}


__getattr__ = lazy_exports(__name__, _WHERE, globals())


__all__ = [
    "ADMINISTRATION_RECORD",
    "FORMULARY_MEANING",
    "FORMULARY_ROLE",
    "FORMULARY_SOURCE",
    "OPENING_ROLES",
    "RECORDS_ARCHIVED",
    "RECORDS_FAILED",
    "RECORDS_PENDING",
    "Bedside",
    "BoardRow",
    "CaseRecords",
    "CaseView",
    "CatchUp",
    "InterfaceEvent",
    "NextDue",
    "PendingOrderView",
    "PharmacyQueue",
    "Proof",
    "RecordsWriter",
    "SittingEntry",
    "StepCount",
    "gs1_check_digit_ok",
    "open_bedside",
    "patient_ref",
]
