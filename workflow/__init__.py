"""Bedside: checked, signed and auditable high-alert IV drug preparation and administration.

The core (protocol, dosing, rules, schedule, machine, records, store) never imports the web or
command-line layers; they sit on top and only translate.
"""

__version__ = "0.1.0"
