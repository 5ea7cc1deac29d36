"""``bedside patient|course|case|run``: patients, courses, dose cases and scripted walks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflow.core.errors import BedsideError, InputError, NotFound
from workflow.core.events import format_time

from ._app import add_password_stdin, open_app, parse_time, read_password
from ._common import print_json

if TYPE_CHECKING:  # the service, store and identity load only when a command runs (start-up)
    from workflow.service import Bedside, CaseView
    from workflow.service.vocabulary import Credentials


def register(sub: Any) -> None:
    for add in (_register_patient, _register_course, _register_case):
        add(sub)


def _register_patient(sub: Any) -> None:
    p = sub.add_parser("patient", help="patients (two identifiers: MRN, name + date of birth)")
    ps = p.add_subparsers(dest="patient_command", metavar="ACTION", required=True)
    a = ps.add_parser("add", help="register a patient")
    a.add_argument("--mrn", required=True)
    a.add_argument("--family", required=True, help="family name")
    a.add_argument("--given", required=True, help="given name")
    a.add_argument("--dob", required=True, help="date of birth YYYY-MM-DD")
    a.add_argument(
        "--confirm-mixed-script",
        action="store_true",
        help="register a name that mixes look-alike scripts exactly as typed (after checking "
        "it against the identity document: without this it is refused with a warning)",
    )
    a.set_defaults(handler=patient_add)
    ls = ps.add_parser("list", help="list patients")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=patient_list)


def _register_course(sub: Any) -> None:
    c = sub.add_parser("course", help="treatment courses")
    cs = c.add_subparsers(dest="course_command", metavar="ACTION", required=True)
    st = cs.add_parser(
        "start",
        help="start a course: a prescriber signs the protocol's attestations",
        description="Start a course for a patient. The prescriber attests each condition the "
        "protocol lists (the boxed warning's: `bedside checklist show` lists them) and signs. "
        "After a toxicity that contraindicates retreatment the course is refused, naming the "
        "rule, date and dose, unless the protocol allows a prescriber's override with a reason.",
    )
    st.add_argument("--mrn", required=True)
    st.add_argument("--user", required=True, help="the prescriber starting it")
    st.add_argument(
        "--attest",
        action="append",
        default=[],
        metavar="ID",
        help="an attestation id the prescriber confirms (repeat), or 'all' to confirm every "
        "one the protocol lists (they are printed)",
    )
    st.add_argument(
        "--override-reason",
        default="",
        help="after a contraindicating toxicity: the prescriber's reason to retreat anyway",
    )
    add_password_stdin(st)
    st.set_defaults(handler=course_start)


def _register_case(sub: Any) -> None:
    k = sub.add_parser("case", help="dose cases")
    ks = k.add_subparsers(dest="case_command", metavar="ACTION", required=True)
    n = ks.add_parser("new", help="open the next dose of a patient's course")
    n.add_argument("--mrn", required=True)
    n.add_argument("--user", required=True, help="prescriber or pharmacist opening it")
    n.add_argument("--at", help="scheduled time (ISO 8601 with zone; default now)")
    add_password_stdin(n)
    n.set_defaults(handler=case_new)
    sh = ks.add_parser("show", help="a case's state, plan and entries")
    sh.add_argument("case_id")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(handler=case_show)
    kl = ks.add_parser("list", help="cases, soonest first")
    kl.add_argument("--state", action="append", help="only these states (repeatable)")
    kl.add_argument("--mrn")
    kl.add_argument("--json", action="store_true")
    kl.set_defaults(handler=case_list)

    r = sub.add_parser("run", help="apply a scripted walk (YAML) through one or more doses")
    r.add_argument("script")
    r.set_defaults(handler=run_script)


def patient_add(args: argparse.Namespace) -> int:
    from workflow.core.names import MixedScriptName

    app = open_app(args)
    try:
        p = app.register_patient(
            mrn=args.mrn,
            family_name=args.family,
            given_name=args.given,
            date_of_birth=args.dob,
            by="cli",
            confirm_mixed_script=args.confirm_mixed_script,
        )
    except MixedScriptName as warning:
        raise warning.confirm_with("add --confirm-mixed-script") from None
    print(f"added {p.display_name} {p.mrn} (born {p.date_of_birth.isoformat()}) id {p.id}")
    return 0


def patient_list(args: argparse.Namespace) -> int:
    app = open_app(args)
    patients = app.search_patients(limit=500)
    if args.json:
        print_json(
            [
                {
                    "id": p.id,
                    "mrn": p.mrn,
                    "name": p.display_name,
                    "date_of_birth": p.date_of_birth.isoformat(),
                }
                for p in patients
            ]
        )
        return 0
    for p in patients:
        print(f"{p.mrn:<16} {p.display_name:<36} {p.date_of_birth.isoformat()}  {p.id}")
    return 0


def _patient(app: Bedside, mrn: str) -> Any:
    return app.patient_by_mrn(mrn)


def _active_course(app: Bedside, mrn: str) -> Any:
    return app.active_course(_patient(app, mrn).id)


def attestations_from(app: Bedside, wanted: list[str]) -> dict[str, bool]:
    """``--attest`` ids (or 'all') as attestation values; 'all' prints what it confirms."""
    spec = app.protocol.course_start
    items = spec.items if spec else ()
    if "all" in wanted:
        for item in items:
            print(f"  attested: {item.label} [source: {item.source}]")
        return {item.id: True for item in items}
    return {item_id: True for item_id in wanted}


def signing_app(args: argparse.Namespace) -> Bedside:
    """The installation, for a command that signs clinical steps: refused on a home without its
    signing material, where a dose could be completed whose records nobody can sign (13.6)."""
    app = open_app(args)
    if app.archiver is None:
        raise InputError(
            "home",
            "has no signing material (pki/): doses signed here would have no signed records; "
            "run `bedside init` first",
        )
    return app


def course_start(args: argparse.Namespace) -> int:
    from workflow.service.vocabulary import Credentials

    app = signing_app(args)
    patient = _patient(app, args.mrn)
    attestations = attestations_from(app, args.attest)
    password = read_password(args, f"Password for {args.user}: ")
    course = app.start_course(
        patient.id,
        Credentials(args.user, password),
        attestations,
        override_reason=args.override_reason,
    )
    p = app.protocol
    print(f"started course {course.id} for {patient.display_name} on {p.name} {p.version}")
    override = (course.start_record or {}).get("retreatment_override")
    if override:
        print(f"  retreatment override signed: {override['reason']}")
    return 0


def case_new(args: argparse.Namespace) -> int:
    from workflow.service.vocabulary import Credentials

    app = signing_app(args)
    course = _active_course(app, args.mrn)
    at = parse_time("at", args.at) or app.clock.now()
    password = read_password(args, f"Password for {args.user}: ")
    view = app.open_case(course.id, at, Credentials(args.user, password))
    c = view.case
    print(
        f"opened case {c.case_id}: cycle {c.cycle} dose {c.dose_in_cycle} (course dose "
        f"{c.dose_in_course}); next step {c.state}; version {view.version}"
    )
    return 0


def case_json(view: CaseView) -> dict[str, Any]:
    c = view.case
    plan = c.plan
    return {
        "case_id": c.case_id,
        "state": c.state,
        "version": view.version,
        "patient": c.patient.to_json() if c.patient else None,
        "cycle": c.cycle,
        "dose_in_cycle": c.dose_in_cycle,
        "dose_in_course": c.dose_in_course,
        "allowed_steps": list(c.allowed_steps()),
        "plan": plan.to_json() if plan else None,
        "beyond_use_at": format_time(c.beyond_use_at) if c.beyond_use_at else None,
        "holds": [f.to_json() for f in c.active_holds],
        "differences": list(c.differences),
        "flags": [f.to_json() for f in c.flags],
        "entries": [
            {
                "seq": e.seq,
                "step": e.step,
                "by": e.signer.to_json(),
                "at": format_time(e.at),
                "meaning": e.meaning,
                "superseded_by": e.superseded_by,
                "values": {k: _jsonable(v) for k, v in e.values.items()},
            }
            for e in c.history
        ],
        "end": c.end,
    }


def _jsonable(value: object) -> object:
    from workflow.core.events import json_safe

    return json_safe(value)


def case_show(args: argparse.Namespace) -> int:
    app = open_app(args)
    view = app.load(args.case_id)
    if args.json:
        print_json(case_json(view))
        return 0
    data = case_json(view)
    print(f"case {data['case_id']}  state {data['state']}  version {data['version']}")
    print(
        f"  cycle {data['cycle']} dose {data['dose_in_cycle']} (course dose "
        f"{data['dose_in_course']})"
    )
    for e in data["entries"]:
        old = f" (superseded by {e['superseded_by']})" if e["superseded_by"] else ""
        print(f"  {e['seq']:>3} {e['at']} {e['step']:<24} {e['by']['name']} [{e['meaning']}]{old}")
    for h in data["holds"]:
        print(f"  HOLD {h['rule_id']}: {h['text']} [source: {h['source']}]")
    for d in data["differences"]:
        print(f"  DIFFERENCE {d}")
    for f in data["flags"]:
        print(f"  FLAG {f['code']}: {f['message']}")
    return 0


def case_list(args: argparse.Namespace) -> int:
    app = open_app(args)
    patient_id = _patient(app, args.mrn).id if args.mrn else None
    records = app.list_cases(patient_id=patient_id, states=args.state)
    records.sort(key=lambda r: r.scheduled_at)
    if args.json:
        print_json(
            [
                {
                    "case_id": r.id,
                    "state": r.state,
                    "version": r.version,
                    "cycle": r.cycle,
                    "dose_in_cycle": r.dose_in_cycle,
                    "dose_in_course": r.dose_in_course,
                    "scheduled_at": format_time(r.scheduled_at),
                }
                for r in records
            ]
        )
        return 0
    for r in records:
        print(
            f"{r.id}  {format_time(r.scheduled_at)}  cycle {r.cycle} dose "
            f"{r.dose_in_cycle:<2}  {r.state}"
        )
    return 0


# -- scripted walks ---------------------------------------------------------------------------

_ACTIONS = (
    "start_course",
    "open",
    "sign",
    "assess",
    "resume",
    "discontinue",
    "cancel",
    "waste",
    "correct",
    "reject",
)


def run_script(args: argparse.Namespace) -> int:
    """Apply a script's actions in order; stop at the first refused one.

    Format (YAML)::

        passwords: {dr.okafor: "...", n.alvarez: "..."}   # keep the file private
        actions:
          - {start_course: {mrn: MRN-1, attest: all}, by: dr.okafor}
          - {open: {mrn: MRN-1, at: "2026-11-22T08:00Z"}, by: dr.okafor}
          - {sign: order, by: dr.okafor, values: {dosing_weight_kg: "70", ...}}
          - {sign: order_verification, by: p.lindqvist, values: auto}
          - {resume: {reason: criteria_met, note: "..."}, by: dr.okafor}
          - {correct: {target_seq: 2, values: {dosing_weight_kg: "72"}, reason: typo},
             by: dr.okafor}
          - {reject: {step: reconstitution, reason: "lot in the photo differs"},
             by: p.lindqvist}

    ``values: auto`` enters what the case's own plan, patient and label say (for demos and
    drills); ``case:`` names a case, else the one most recently opened is used.
    """
    from workflow.service.vocabulary import Credentials

    script, passwords = _read_script(Path(args.script))
    app = signing_app(args)
    # Finish what an interrupted earlier run left: an ended case whose records were not archived.
    for message in app.archive_pending().refused.values():
        print(f"bedside: REFUSED: {message}", file=sys.stderr, flush=True)
    current: str | None = None
    for n, action in enumerate(script["actions"], 1):
        where = f"actions[{n}]"
        kind, by = _action_kind(action, passwords, where)
        proof = Credentials(by, str(passwords[by]))
        case_id = action.get("case", current)
        try:
            if kind == "start_course":
                course = _start_course(app, action[kind], proof, where)
                print(f"{n:>3}. {kind:<11} {course.id}  (course started)")
                continue
            view = _apply(app, kind, action, proof, case_id, where)
        except BedsideError as exc:
            print(f"step {n} ({kind}) refused: {exc.message}")
            raise
        current = view.case.case_id
        print(
            f"{n:>3}. {kind:<11} {view.case.case_id}  -> {view.case.state} (version {view.version})"
        )
        if view.archive_error:
            print(
                f"     records not made yet ({view.archive_error}); "
                "`bedside archive catch-up` makes them",
                file=sys.stderr,
            )
    return 0


def _read_script(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The script's mapping and its passwords, or InputError saying what is wrong."""
    import yaml

    try:
        script = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError("script", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InputError("script", f"{path} is not valid YAML: {exc}") from None
    if not isinstance(script, dict) or not isinstance(script.get("actions"), list):
        raise InputError("script", "must be a mapping with an 'actions' list")
    passwords = script.get("passwords") or {}
    if not isinstance(passwords, dict):
        raise InputError("passwords", "must map usernames to passwords")
    return script, passwords


def _action_kind(action: Any, passwords: dict[str, Any], where: str) -> tuple[str, str]:
    """The action's one kind and who does it (a user listed under passwords)."""
    if not isinstance(action, dict):
        raise InputError(where, "must be a mapping")
    kinds = [k for k in _ACTIONS if k in action]
    if len(kinds) != 1:
        raise InputError(where, "needs exactly one action", ", ".join(_ACTIONS))
    by = action.get("by")
    if not isinstance(by, str) or by not in passwords:
        raise InputError(f"{where}.by", "must name a user listed under passwords")
    return kinds[0], by


def _start_course(app: Bedside, body: Any, proof: Credentials, where: str) -> Any:
    if not isinstance(body, dict) or "mrn" not in body:
        raise InputError(f"{where}.start_course", "needs mrn and attest (a list of ids, or all)")
    attest = body.get("attest", [])
    wanted = [attest] if isinstance(attest, str) else list(attest or [])
    return app.start_course(
        _patient(app, str(body["mrn"])).id,
        proof,
        attestations_from(app, [str(a) for a in wanted]),
        override_reason=str(body.get("override_reason") or ""),
    )


def _apply(
    app: Bedside,
    kind: str,
    action: dict[str, Any],
    proof: Credentials,
    case_id: str | None,
    where: str,
) -> CaseView:
    body = action[kind]
    if kind == "open":
        if not isinstance(body, dict) or "mrn" not in body:
            raise InputError(f"{where}.open", "needs mrn (and optionally at)")
        course = _active_course(app, str(body["mrn"]))
        at = parse_time(f"{where}.open.at", body.get("at")) or app.clock.now()
        return app.open_case(course.id, at, proof)
    if case_id is None:
        raise InputError(f"{where}.case", "no case opened yet and none named")
    try:
        view = app.load(str(case_id))
    except NotFound:
        raise InputError(f"{where}.case", f"no case {case_id}") from None
    if kind == "sign":
        from workflow.dev.walk import values_for

        values = action.get("values", {})
        if values == "auto":
            values = values_for(view.case, str(body), app.clock.now())
            values.update(action.get("override") or {})
        if not isinstance(values, dict):
            raise InputError(f"{where}.values", "must be a mapping or 'auto'")
        return app.sign_step(view.case.case_id, view.version, str(body), values, proof)
    if kind == "assess":
        return app.assess(view.case.case_id, view.version, dict(body), proof)
    if kind == "correct":
        return app.correct(
            view.case.case_id,
            view.version,
            int(body["target_seq"]),
            dict(body.get("values") or {}),
            str(body.get("reason", "")),
            proof,
        )
    if kind == "reject":  # the verifier sends a step back to be redone (issue 16.2)
        if not isinstance(body, dict) or "step" not in body:
            raise InputError(f"{where}.reject", "needs step and reason")
        return app.reject_step(
            view.case.case_id, view.version, str(body["step"]), str(body.get("reason", "")), proof
        )
    body = body if isinstance(body, dict) else {"reason": body}
    return app.side_exit(
        view.case.case_id,
        view.version,
        kind,
        str(body.get("reason")),
        str(body.get("note", "")),
        proof,
    )
