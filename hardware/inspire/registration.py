"""Registers the Inspire RH56 (Modbus TCP/RTU) as the ``inspire_rh56`` hand kind."""
from __future__ import annotations

from hardware.inspire.config import InspireHandConfig
from hardware.inspire.probe import probe_inspire
from hardware.registry import register


@register("hand", "inspire_rh56", InspireHandConfig, probe=probe_inspire,
          description="Inspire RH56 6-DoF hand over Modbus TCP or RTU")
def make_inspire_rh56(config: InspireHandConfig):
    from hardware.inspire.driver import InspireHand

    return InspireHand(config)
