"""Inspire RH56 6-DoF hand over Modbus TCP/RTU.

* ``config.InspireHandConfig``: the driver's one config dataclass.
* ``driver.InspireHand``: implements ``hardware.interfaces.Hand`` with a fixed-rate command+read loop.
* ``registers``: the byte-addressed register map and its encodings.
* ``emulator``: a pymodbus server emulating the hand (``python -m hardware.inspire.emulator``), with fault
  injection and the ``HandPlant`` hook for a physics simulation.
* ``virtual_serial.VirtualSerialPair``: a pty "null-modem cable" to run Modbus RTU without hardware.
"""
from hardware.inspire.config import InspireHandConfig
from hardware.inspire.driver import InspireHand

__all__ = ["InspireHand", "InspireHandConfig"]
