"""An order from the hospital's system, whatever way it came (HL7 v2 RDE^O11 / ORM^O01 over
MLLP, or a FHIR R4 MedicationRequest): the one shape ``Bedside.receive_order`` applies.

Parsers (workflow.interop.hl7v2, workflow.interop.fhir_order) fill it and refuse what they
cannot read, naming the field; the service judges it against the protocol and the patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

# What the order asks for (HL7 ORC-1 order control; FHIR MedicationRequest.status / intent).
NEW = "new"  # NW
CHANGE = "change"  # XO
DISCONTINUE = "discontinue"  # DC
CANCEL = "cancel"  # CA
CONTROLS = (NEW, CHANGE, DISCONTINUE, CANCEL)

# Body weight observations an order's weight may come from (LOINC): "Body weight" and "Body
# weight Measured"; the same codes in an HL7 v2 OBX-3 and a FHIR Observation.code.
WEIGHT_CODES = ("29463-7", "3141-9")
# Priorities the pharmacy queue sorts by (ORC-7.6 / TQ1-9: S = STAT; FHIR priority stat).
STAT = "stat"
ROUTINE = "routine"
PRIORITIES = (STAT, ROUTINE)
# Units an ordered dose per kg may be written in, the same for both readers (HL7 RXE-5 /
# RXO-4, FHIR doseQuantity.code or .unit). Only spellings that mean the international unit:
# "IU/kg" as written on the label, and UCUM's "[iU]/kg" with its synonym "[IU]/kg".
# Refused on purpose: "U/kg" (in UCUM "U" is the enzyme unit, 1 umol/min, not the IU) and
# "unt/kg" (no UCUM code at all; a bare "unit" does not say which unit): reading either as IU
# would be a guess about the dose, and a unit guessed wrong is a dose off by that factor.
DOSE_UNITS = ("IU/kg", "[iU]/kg", "[IU]/kg")


@dataclass(frozen=True)
class OrderPatient:
    """The two identifiers an order carries: the MRN, and name + date of birth."""

    mrn: str
    family_name: str
    given_name: str
    date_of_birth: date


@dataclass(frozen=True)
class Orderer:
    """The ordering provider as the hospital names them (ORC-12, MedicationRequest.requester)."""

    id: str
    family_name: str
    given_name: str

    @property
    def display(self) -> str:
        name = " ".join(p for p in (self.given_name, self.family_name) if p)
        return f"{name} ({self.id})" if name else self.id


@dataclass(frozen=True)
class OrderDose:
    """What a new or changed order gives: the dose per kg, the weight it was ordered on (with
    where it was measured and when), when the dose is due."""

    drug: str  # the drug named by the order (code or name), matched against the protocol
    dose_iu_per_kg: Decimal
    weight_kg: Decimal
    weight_source: str  # one of the order step's weight_source options
    weight_measured_at: datetime
    scheduled_at: datetime
    deviation_reason: str = ""  # the prescriber's reason when the dose is not the label dose


@dataclass(frozen=True)
class OrderMessage:
    channel: str  # "hl7" or "fhir"
    control_id: str  # MSH-10 / the FHIR Bundle's id: a resent message is found by it
    kind: str  # "RDE^O11", "ORM^O01", "MedicationRequest": for the interface log
    control: str  # one of CONTROLS
    placer_order: str  # ORC-2 / MedicationRequest.identifier: later XO/DC name it
    patient: OrderPatient
    orderer: Orderer
    priority: str = ROUTINE
    dose: OrderDose | None = None  # required for NEW and CHANGE
    reason: str = ""  # why a DC/CA (ORC-16) or XO was sent
    raw: str = ""  # the message as received, for the interface log
