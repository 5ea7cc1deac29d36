"""The clinical core: protocol, dosing, rules, items, schedule, the case machine and
its events. Pure: no storage, no network, no files but the protocol it is given."""
