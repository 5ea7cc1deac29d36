"""The per-step ``photos`` declaration: the in-process images a step asks for (issue 16.2).

Each entry is ``{id, label, required?, scan?}``: ``id`` names the photo in the signed event and
in the form (``photo_<id>``), ``label`` is what the technician and the verifier read, a
``required`` photo must be taken before the step can be signed, and ``scan`` names one of the
step's ``scans`` kinds whose barcode the photo shows (the server reads it and compares).
"""

from __future__ import annotations

from collections.abc import Sequence

from ._fields import Issues, MapReader
from ._yaml import YList
from .model import Item, PhotoSpec, ScanSpec


def photos(
    issues: Issues,
    seq: YList,
    where: str,
    scans: Sequence[ScanSpec],
    items: Sequence[Item],
) -> tuple[PhotoSpec, ...]:
    out: list[PhotoSpec] = []
    seen: set[str] = set()
    item_ids = {it.id for it in items}
    kinds = [s.kind for s in scans]
    if not kinds:
        # A text from before ``scans`` (its scans are inferred later from the items): a kind
        # is a product this step identifies by lot and expiry.
        kinds = sorted(i.removesuffix("_lot") for i in item_ids if i.endswith("_lot"))
        kinds = [k for k in kinds if f"{k}_expiry" in item_ids]
    for i, node in enumerate(seq):
        r = MapReader(issues, node, f"{where}.photos[{i}]", seq.line_of(i))
        if not r.ok:
            continue
        pid = r.ident("id")
        label = r.text("label")
        required = r.flag("required")
        scan = r.ident("scan", required=False)
        r.done()
        if pid is None or label is None:
            continue
        if pid in seen:
            issues.add(r.line_of("id"), f"{r.where}: photo '{pid}' is listed twice")
            continue
        if pid in item_ids:
            # The form field ``photo_<id>`` and the item ``v_<id>`` must never be confused.
            issues.add(r.line_of("id"), f"{r.where}: photo '{pid}' has an item's id")
            continue
        seen.add(pid)
        if scan is not None and scan not in kinds:
            issues.add(
                r.line_of("scan"),
                f"{r.where}.scan: '{scan}' is not a scanned kind of this step "
                f"(scans: {', '.join(kinds) or 'none'})",
            )
            continue
        out.append(PhotoSpec(pid, label, required, scan))
    return tuple(out)
