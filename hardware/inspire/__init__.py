"""Inspire RH56 6-DoF hand over Modbus TCP/RTU.

* ``config.InspireHandConfig``: the driver's one config dataclass.
* ``driver.InspireHand``: implements ``hardware.interfaces.Hand`` with a fixed-rate command+read loop.
* ``registers``: the byte-addressed register map and its encodings.
* the emulator (``python -m hardware.inspire.emulator`` / ``jala-inspire-emulator``): ``emulator`` (the pymodbus
  server), ``emulator_config``, ``hand_state`` (written settings, latched errors, status), ``plant`` (the
  ``HandPlant`` hook for a physics simulation, the kinematic plant), ``faults`` (fault injection),
  ``emulator_cli`` (the command line).
* ``registration`` / ``probe``: the ``inspire_rh56`` kind in ``hardware.registry`` and its hardware-check probe.
* ``virtual_serial.VirtualSerialPair``: a pty "null-modem cable" to run Modbus RTU without hardware.
"""
from hardware.inspire.config import InspireHandConfig
from hardware.inspire.driver import InspireHand

__all__ = ["InspireHand", "InspireHandConfig"]
