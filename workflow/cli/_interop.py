"""``bedside export fhir``, ``bedside scan``, ``bedside report scan-failures``,
``bedside course report`` and ``bedside picture``: thin wrappers over workflow.interop and
workflow.pictures."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflow.core.errors import InputError, NotFound, StepRefused

from ._app import open_app
from ._common import print_json, protocol_from
from ._progress import track

if TYPE_CHECKING:  # the service, the GS1 parser and reportlab load when a command runs
    from workflow.service import Bedside


class _ScanItems:
    """``--item``'s choices, read from workflow.core.gs1 (the one list) only when argparse
    checks a value or prints help: importing the GS1 parser for every command costs start-up."""

    def _names(self) -> list[str]:
        from workflow.core.gs1 import SCAN_STEPS

        return sorted(SCAN_STEPS)

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def register(sub: Any) -> None:
    e = sub.add_parser("export", help="export doses to other systems")
    es = e.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    f = es.add_parser("fhir", help="FHIR R4 MedicationAdministration + Provenance per dose")
    f.add_argument("case_id", nargs="?", help="one dose case (or --all / --mrn)")
    f.add_argument("--all", action="store_true", help="every case")
    f.add_argument("--mrn", help="every case of this patient")
    f.add_argument("--out", metavar="DIR", help="write one Bundle per case as DIR/CASE.json")
    f.set_defaults(handler=export_fhir)

    s = sub.add_parser("scan", help="read a GS1 barcode as a scanner types it")
    s.add_argument("text", help="the scanned element string (FNC1 as GS, <GS> or (AI) form)")
    s.add_argument(
        "--item",
        choices=_ScanItems(),
        default="vial",
        metavar="ITEM",
        help="what was scanned: %(choices)s (default vial)",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=scan)

    r = sub.add_parser("report", help="reports over all cases")
    rs = r.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    sf = rs.add_parser("scan-failures", help="products typed in instead of scanned")
    sf.add_argument("--json", action="store_true")
    sf.set_defaults(handler=report_scan_failures)

    # `course` is registered by _clinical; its report lives here with the other pictures. (A
    # parser built for `bedside export` alone has no `course`: start-up, cli/__init__.py.)
    course = sub.choices.get("course")
    if course is not None:
        actions = next(a for a in course._actions if isinstance(a, argparse._SubParsersAction))
        cr = actions.add_parser("report", help="course summary PDF with the timeline chart")
        cr.add_argument("mrn", help="the patient's MRN")
        cr.add_argument("--out", metavar="FILE", help="default: course-<MRN>.pdf")
        cr.set_defaults(handler=course_report)

    p = sub.add_parser("picture", help="SVG pictures: the state diagram, a course timeline")
    ps = p.add_subparsers(dest="picture_command", metavar="PICTURE", required=True)
    d = ps.add_parser("diagram", help="the protocol's state diagram (graphviz dot)")
    d.add_argument("--out", metavar="FILE", help="default: standard output")
    d.set_defaults(handler=picture_diagram)
    t = ps.add_parser("timeline", help="a patient's course timeline")
    t.add_argument("mrn")
    t.add_argument("--out", metavar="FILE", help="default: standard output")
    t.set_defaults(handler=picture_timeline)


def _write(out: str | None, data: bytes) -> None:
    if out is None:
        import sys

        sys.stdout.buffer.write(data)
        return
    Path(out).write_bytes(data)
    print(f"wrote {out}")


def export_fhir(args: argparse.Namespace) -> int:
    from workflow.interop.export import all_case_ids, case_bundle, patient_case_ids

    app = open_app(args)
    if args.all:
        ids = all_case_ids(app)
    elif args.mrn:
        ids = patient_case_ids(app, args.mrn)
    elif args.case_id:
        ids = [args.case_id]
    else:
        raise InputError("case_id", "name a case, or give --all or --mrn")
    one = bool(args.case_id) and not args.all and not args.mrn
    # Many cases take seconds to minutes: a bar on a terminal, else a line per case on stderr
    # (standard output stays the bundles or the summary).
    todo = (
        ids
        if one
        else track(ids, "export fhir", unit="case", json_output=args.out is None, name=str)
    )
    if args.out is None:
        bundles = [case_bundle(app, i) for i in todo]
        print_json(bundles[0] if one else bundles)
        return 0
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    for i in todo:
        path = folder / f"{i}.json"
        path.write_text(json.dumps(case_bundle(app, i), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(ids)} FHIR bundle(s) to {folder}")
    return 0


def scan(args: argparse.Namespace) -> int:
    # The formulary comes from the overlay: use the installation's protocol when there is one.
    protocol = open_app(args).protocol if args.home or args.db else protocol_from(args)
    from workflow.core.clock import SystemClock
    from workflow.core.gs1 import scan_to_values

    values = scan_to_values(protocol, args.item, args.text, SystemClock().now())
    if args.json:
        print_json(values)
    else:
        for k, v in values.items():
            print(f"  {k:<22} {v}")
    return 0


def report_scan_failures(args: argparse.Namespace) -> int:
    from workflow.interop.export import scan_report
    from workflow.interop.scan_report import format_report

    report = scan_report(open_app(args))
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0


def _course_of(app: Bedside, mrn: str) -> tuple[str, list[Any]]:
    patient = app.find_patient_by_mrn(mrn)
    if patient is None:
        raise NotFound(f"no patient with MRN {mrn}")
    courses = app.list_courses(patient.id)
    if not courses:
        raise StepRefused("no_course", f"{patient.display_name} has no course")
    course = courses[-1]
    cases = app.course_cases(course.id)
    if not cases:
        raise StepRefused("no_doses", f"the course of {patient.display_name} has no doses yet")
    return patient.display_name, cases


def course_report(args: argparse.Namespace) -> int:
    from workflow.pictures.course_report import course_report_pdf

    app = open_app(args)
    name, cases = _course_of(app, args.mrn)
    pdf = course_report_pdf(cases, patient=name, mrn=args.mrn, generated_at=app.clock.now())
    _write(args.out or f"course-{args.mrn}.pdf", pdf)
    return 0


def picture_diagram(args: argparse.Namespace) -> int:
    from workflow.pictures.state_diagram import state_diagram_svg

    _write(args.out, state_diagram_svg(protocol_from(args)))
    return 0


def picture_timeline(args: argparse.Namespace) -> int:
    from workflow.pictures.timeline import course_timeline, timeline_svg

    app = open_app(args)
    name, cases = _course_of(app, args.mrn)
    svg = timeline_svg(course_timeline(cases[-1].protocol, cases, f"{name} ({args.mrn})"))
    _write(args.out, svg.encode())
    return 0
