"""Serve the simulated hand over the real Inspire RH56 Modbus protocol.

An ``InspireHandEmulator`` (hardware.inspire.emulator) runs with ``external_physics=True``: its ANGLE_SET /
SPEED_SET registers (written by any Modbus client, e.g. hardware.inspire.driver.InspireHand) become the sim
hand's targets and per-DoF speed, and the sim's measured finger angles and forces are published back in the
ANGLE_ACT / FORCE_ACT registers (status, current and error registers are derived by the emulator). The world
calls the twin on every task tick (``task_tick_steps`` physics steps).

    world = SimWorld(SimWorldConfig(task="water_plant"))
    twin = InspireModbusTwin(world, port=0).start()      # Modbus TCP on 127.0.0.1:twin.port
    hand = InspireHand(InspireHandConfig(port=twin.port)); hand.connect()
"""
from __future__ import annotations

import numpy as np

from hardware.inspire.emulator import InspireEmulatorConfig, InspireHandEmulator

from .world import SimWorld


class InspireModbusTwin:
    def __init__(self, world: SimWorld, port: int = 0, host: str = "127.0.0.1", device_id: int = 1):
        if host != "127.0.0.1":
            raise ValueError("the twin only binds to loopback (127.0.0.1)")
        self.world = world
        self.emulator = InspireHandEmulator(InspireEmulatorConfig(host=host, port=port, device_id=device_id,
                                                                  external_physics=True))
        self._started = False

    @property
    def port(self) -> int:
        return self.emulator.port

    def start(self) -> "InspireModbusTwin":
        self.emulator.start()
        self._started = True
        self.world.add_tick_hook(self.sync)
        with self.world.lock:
            self.sync()
        return self

    def sync(self) -> None:
        """Emulator command -> sim hand targets; sim measurement -> emulator registers (world lock held)."""
        if not self._started:
            return
        w = self.world
        cmd = self.emulator.get_targets()
        angles = w.hand._angles()
        target = np.where(np.asarray(cmd.halted, bool), angles, np.asarray(cmd.angles, float))
        w.hand_ctrl.target = np.clip(target, 0.0, 1000.0)
        w.hand_ctrl.rate = np.maximum(np.asarray(cmd.units_per_s, float), 1.0)
        forces = np.abs(w.data.actuator_force[w.hand_act]) * w.hand.force_per_nm
        self.emulator.set_actual(angles, forces)

    def stop(self) -> None:
        if self._started:
            self.world.remove_tick_hook(self.sync)
            self.emulator.stop()
            self._started = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
