"""``bedside dose``: the dose plan for a weight."""

from __future__ import annotations

import argparse
from typing import Any

from workflow.core.errors import InputError

from ._app import parse_time
from ._common import print_json, protocol_from


def register(sub: Any) -> None:
    p = sub.add_parser("dose", help="compute the dose plan for a weight")
    p.add_argument("--weight-kg", metavar="W", help="dosing weight in kg (required)")
    p.add_argument(
        "--dose-iu-per-kg", metavar="X", help="ordered dose per kg (default: the protocol dose)"
    )
    p.add_argument(
        "--prepared-at",
        metavar="TIME",
        help="preparation time (ISO 8601 with zone) for the beyond-use time",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workflow.core.dosing import beyond_use_at, fmt, plan_dose
    from workflow.core.events import format_time

    protocol = protocol_from(args)
    if args.weight_kg is None:
        d = protocol.dosing
        raise InputError(
            "weight_kg",
            "is required (--weight-kg)",
            f"{fmt(d.weight_accepted_min.value)} to {fmt(d.weight_accepted_max.value)} kg",
        )
    plan = plan_dose(protocol, args.weight_kg, args.dose_iu_per_kg)
    prepared = parse_time("prepared_at", args.prepared_at)
    bud = beyond_use_at(protocol, prepared) if prepared else None
    if args.json:
        data = plan.to_json()
        data["protocol"] = {
            "id": protocol.id,
            "version": protocol.version,
            "hash": protocol.content_hash,
        }
        if prepared and bud:
            data["prepared_at"] = format_time(prepared)
            data["beyond_use_at"] = format_time(bud)
        print_json(data)
        return 0
    recon = protocol.dosing.reconstituted_concentration
    words = plan.words()  # the one rounding for people (core/dosing.PLAN_DECIMALS)
    lines = [
        f"{protocol.name} (protocol {protocol.version})",
        f"  weight                {words['weight_kg']} kg x {words['dose_iu_per_kg']} IU/kg",
        f"  dose                  {words['dose_iu']} IU = {words['dose_mg']} mg",
        f"  vials                 {plan.vials} x {fmt(protocol.dosing.vial_content.value, 0)} IU, "
        f"each + {words['reconstitution_volume_ml_per_vial']} mL "
        f"{protocol.say('reconstitution_diluent')}",
        f"  withdraw              {words['reconstituted_volume_ml']} mL at "
        f"{fmt(recon.value, 0)} {recon.unit}",
        f"  dilute in             {words['diluent_volume_ml']} mL "
        f"{protocol.say('final_diluent_short')} ({plan.band_text()})",
        f"  final                 {words['final_volume_ml']} mL at "
        f"{words['final_concentration_mcg_per_ml']} mcg/mL",
        f"  infuse                over {words['infusion_minutes']} min at "
        f"{words['pump_rate_ml_per_h']} mL/h, {protocol.say('in_line_filter').lower()}",
        f"  mg convention         {plan.mg_convention}",
    ]
    if prepared and bud:
        lines.append(f"  beyond-use            infusion must END by {format_time(bud)}")
    for w in plan.warnings:
        lines.append(f"  WARNING {w.code}: {w.message}")
    print("\n".join(lines))
    return 0
