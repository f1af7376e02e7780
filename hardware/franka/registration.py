"""Registers the Franka Research 3 (through franky-control) as the ``franka_fr3`` arm kind.

Importing this module imports no franky: the driver module is imported when a device is made.
"""
from __future__ import annotations

from hardware.franka.config import FrankaArmConfig
from hardware.franka.probe import FrankaProbeOptions, probe_fr3
from hardware.registry import register


@register("arm", "franka_fr3", FrankaArmConfig, probe=probe_fr3, probe_options=FrankaProbeOptions,
          description="Franka Research 3 through franky-control (libfranka 0.21.2)")
def make_franka_fr3(config: FrankaArmConfig):
    from hardware.franka.arm import FrankaArm  # imports franky

    return FrankaArm(config)
