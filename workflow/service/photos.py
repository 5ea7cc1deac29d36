"""In-process photos (issue 16.2): the images a preparation step asks for, checked by content,
stored write-once in the archive, their barcodes read; and serving a case's own photos back.
Part of :class:`workflow.service.Bedside`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflow.core.errors import InputError, NotFound
from workflow.core.photos import PHOTO_FIELD_PREFIX, PhotoRef, photos_of
from workflow.records.blobstore import BlobStore
from workflow.records.photos import check_image, media_type, read_barcodes
from workflow.service.base import ServiceBase


class Photos(ServiceBase):
    """Mixed into :class:`workflow.service.Bedside`."""

    # The archive's photo store (records/photos.py); None: this installation takes no photos.
    photos: BlobStore | None = None

    def _store_photos(self, step: Any, photos: Mapping[str, bytes]) -> dict[str, PhotoRef]:
        """Check every upload before storing any (nothing half-written on a bad one). A
        stored photo whose step is then refused stays as an unreferenced file: content-
        addressed, never named by an event, harmless, and reused if the same bytes come again."""
        if not photos:
            return {}
        declared = {p.id: p for p in step.photos}
        for pid, data in photos.items():
            field = PHOTO_FIELD_PREFIX + pid
            spec = declared.get(pid)
            if spec is None:
                raise InputError(field, f"this step takes no photo '{pid}'", ", ".join(declared))
            check_image(field, data, label=spec.label)
        if self.photos is None:
            raise InputError("photos", "this installation has no archive to keep photos in")
        refs = {}
        for pid, data in photos.items():
            codes = read_barcodes(data) if declared[pid].scan else []
            refs[pid] = PhotoRef(pid, self.photos.put(data), codes[0] if codes else None)
        return refs

    def photo(self, case_id: str, sha256: str) -> tuple[bytes, str]:
        """A photo signed into one of the case's events, with its media type; NotFound for a
        hash the case never named (a case's page shows only its own photos)."""
        view = self.load(case_id)
        named = {r.sha256 for e in view.case.events for r in photos_of(e.data)}
        if sha256 not in named or self.photos is None:
            raise NotFound(f"case {case_id} has no photo {sha256}")
        data = self.photos.get(sha256)
        return data, media_type(data)
