"""The faults the emulated Inspire hand can be given (``InspireHandEmulator.inject_fault`` / ``clear_fault``).

    Per DoF (latched in ERROR, the DoF halts, status shows it; written CLEAR_ERROR clears the latch unless the
    cause is still there, as for over-temperature while hot): "overcurrent", "stall", "over_temperature".
    Communication: "disconnect" (listener and open connections closed, new connections refused until cleared),
    "unresponsive" (connections accepted, requests never answered), "slow" (every answer delayed by
    ``delay_s``). ``drop_connections()`` closes open connections once but keeps listening (a cable glitch).
"""
from __future__ import annotations

HALTING_FAULTS = ("overcurrent", "stall", "over_temperature")  # per DoF, latched in the ERROR register
COMM_FAULTS = ("disconnect", "unresponsive", "slow")  # the Modbus link
FAULT_KINDS = HALTING_FAULTS + COMM_FAULTS


def check_fault_kind(kind: str) -> None:
    """ValueError unless ``kind`` is one of FAULT_KINDS."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {kind!r}; known: {FAULT_KINDS}")
