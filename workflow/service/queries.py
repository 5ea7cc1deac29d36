"""The service's queries and plain record-keeping commands: patients, cases, worklists, the
archive index, the event log, backups. Part of :class:`workflow.service.Bedside`, the one door
the web and the command line use (they never reach ``workflow.store`` themselves).

Each is one store transaction; the rules (what a valid MRN is, page limits) stay in the store,
which raises InputError naming the field.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from workflow.core.errors import InputError
from workflow.core.events import Event
from workflow.store import ArchivedRecord, CaseRecord, ChainReport, Course, Patient, Store

if TYPE_CHECKING:
    from workflow.archive import Archive
    from workflow.records.signing_pool import SigningPool


class Queries:
    """Mixed into :class:`workflow.service.Bedside` (which sets ``store``)."""

    store: Store
    tz: tzinfo  # the site's zone (Bedside sets it)

    # -- patients and courses --------------------------------------------------------------
    def register_patient(
        self,
        *,
        mrn: str,
        family_name: str,
        given_name: str,
        date_of_birth: str,
        by: str,
        confirm_mixed_script: bool = False,
    ) -> Patient:
        """Register a patient with two identifiers (MRN; name and date of birth). Refusals name
        the field (InputError: ``mrn`` taken or malformed, ``family_name``, ``given_name``,
        ``date_of_birth``; MixedScriptName for a name mixing look-alike scripts until
        confirmed); nothing is written then. ``by`` is who registered it (a username, "cli")."""
        return self.store.add_patient(
            mrn=mrn,
            family_name=family_name,
            given_name=given_name,
            date_of_birth=date_of_birth,
            created_by=by,
            confirm_mixed_script=confirm_mixed_script,
        )

    def patient(self, patient_id: str) -> Patient:
        """A patient by id (NotFound)."""
        return self.store.get_patient(patient_id)

    def find_patient(self, mrn: str) -> Patient | None:
        return self.store.find_patient_by_mrn(mrn)

    def patient_by_mrn(self, mrn: str) -> Patient:
        """The patient with this MRN, or InputError naming ``mrn``."""
        patient = self.store.find_patient_by_mrn(mrn)
        if patient is None:
            raise InputError("mrn", f"no patient with MRN {mrn!r}")
        return patient

    def search_patients(self, text: str = "", *, limit: int = 50) -> list[Patient]:
        """Patients whose MRN or name contains ``text``; every patient (by name) when empty."""
        if not text.strip():
            return self.store.list_patients(limit=limit)
        return self.store.search_patients(text, limit=limit)

    def patient_courses(self, patient_id: str) -> list[Course]:
        """The patient's courses, oldest first."""
        return self.store.list_courses(patient_id)

    # -- cases -------------------------------------------------------------------------------
    def list_cases(
        self,
        *,
        course_id: str | None = None,
        patient_id: str | None = None,
        states: Collection[str] | None = None,
    ) -> list[CaseRecord]:
        return self.store.list_cases(course_id=course_id, patient_id=patient_id, states=states)

    def load_events(self, case_id: str) -> list[Event]:
        """The case's events in order, its hash chain checked (IntegrityError if broken)."""
        return self.store.load_events(case_id)

    def verify_chains(self, positions: Collection[int] = (), jobs: int = 1) -> ChainReport:
        """Check the whole log (``bedside audit verify``), in ``jobs`` worker processes."""
        return self.store.verify_chains(positions, jobs)

    # -- the archive index -----------------------------------------------------------------
    def search_archive(
        self,
        *,
        text: str | None = None,
        mrn: str | None = None,
        case_id: str | None = None,
        signed_from: datetime | None = None,
        signed_to: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        before: tuple[datetime, str] | None = None,
    ) -> list[ArchivedRecord]:
        """Archived records, newest first (``before`` pages by key, see Store.search_archive)."""
        return self.store.search_archive(
            text=text,
            mrn=mrn,
            case_id=case_id,
            signed_from=signed_from,
            signed_to=signed_to,
            limit=limit,
            offset=offset,
            before=before,
        )

    def get_archived_record(self, sha256: str) -> ArchivedRecord:
        """Raises NotFound when the index holds no record with this SHA-256."""
        return self.store.get_archived_record(sha256)

    def open_archive(self, home: Path, signing: SigningPool | None = None) -> Archive:
        """The archive of the home at ``home`` on this installation's database (its records,
        signing material, verification); its records print times in the site's zone."""
        from workflow.archive import Archive

        return Archive(home, self.store, signing=signing, tz=self.tz)

    # -- backups -----------------------------------------------------------------------------
    def backup(self, file: str | os.PathLike[str]) -> Path:
        """A checked copy of the SQLite database (InputError on PostgreSQL: pg_dump)."""
        from workflow.store import backup

        return backup(self.store, file)
