"""Inspire RH56 probe for ``jala-hardware-check`` (registered with the ``inspire_rh56`` hand kind): Modbus TCP or
RTU, per the driver's own ``InspireHandConfig``, then one read of the six ANGLE_ACT registers."""
from __future__ import annotations

import os
from collections.abc import Sequence

from embodiment import INSPIRE_MODBUS_PORT
from hardware.inspire import registers as R
from hardware.inspire.config import InspireHandConfig
from hardware.probes import ProbeResult, ProbeTarget, serial_ports, tcp_probe


def hand_label(cfg: InspireHandConfig) -> str:
    """Where the hand is looked for, as the check's table shows it."""
    if cfg.transport == "rtu":
        return f"{cfg.serial_port}@{cfg.baudrate} id {cfg.device_id}"
    return f"{cfg.host}:{cfg.port} id {cfg.device_id}"


def probe_inspire(targets: Sequence[ProbeTarget], timeout: float) -> list[ProbeResult]:
    """The registry probe of the ``inspire_rh56`` kind: ``probe_hand`` for each target."""
    return [probe_hand(t.config, timeout, t.name) for t in targets]


def probe_hand(hand: InspireHandConfig, timeout: float, name: str = "hand") -> ProbeResult:
    target = hand_label(hand)
    if hand.transport == "tcp":
        ok, reason, kind = tcp_probe(hand.host, hand.port, timeout)
        if not ok:
            hints = {
                "refused": "the address answers but nothing listens on this port: check the hand's Modbus TCP "
                           f"port ({INSPIRE_MODBUS_PORT} by default) and that the hand (or its TCP adapter) is "
                           "powered",
                "timeout": "no answer: is the hand powered, and is this PC on the hand's subnet "
                           "(e.g. 192.168.11.x)?",
                "unreachable": "no route to the hand: give this PC an address on the hand's subnet",
            }
            return ProbeResult(name, target, False, f"hand {hand.host}:{hand.port}: {reason}",
                               hints.get(kind, "check the hand's network settings"))
        from pymodbus.client import ModbusTcpClient

        client = ModbusTcpClient(hand.host, port=hand.port, timeout=timeout, retries=0)
    else:
        if not os.path.exists(hand.serial_port):
            return ProbeResult(name, target, False, f"hand: no such serial port {hand.serial_port}",
                               f"plug in the USB-RS485 adapter; serial ports now: {serial_ports()}")
        if not os.access(hand.serial_port, os.R_OK | os.W_OK):
            return ProbeResult(name, target, False, f"hand: permission denied on {hand.serial_port}",
                               "add your user to the 'dialout' group (sudo usermod -aG dialout $USER), "
                               "then log in again")
        from pymodbus.client import ModbusSerialClient

        client = ModbusSerialClient(hand.serial_port, baudrate=hand.baudrate, timeout=timeout, retries=0)
    block = R.ANGLE_ACT
    try:
        if not client.connect():
            return ProbeResult(name, target, False, f"hand {target}: Modbus connection failed",
                               "check power and the connection settings")
        try:
            rr = client.read_holding_registers(block.address, count=block.registers, device_id=hand.device_id)
        except Exception as exc:  # noqa: BLE001 - pymodbus raises ModbusIOException on no answer
            return ProbeResult(name, target, False, f"hand {target}: no Modbus answer ({exc})",
                               f"wrong device id ({hand.device_id})"
                               + (", baud rate or RS485 A/B wiring" if hand.transport == "rtu" else " or port")
                               + "? The hand must be powered and idle")
        if rr.isError():
            return ProbeResult(name, target, False,
                               f"hand {target}: Modbus error reading {block.name} {block.address}: {rr}",
                               f"this device does not serve the Inspire register map at device id {hand.device_id}")
        angles = list(rr.registers)
        if len(angles) != block.registers:
            return ProbeResult(name, target, False,
                               f"hand {target}: got {len(angles)} registers, expected {block.registers}")
        hint = ""
        if any(not R.ANGLE_MIN <= a <= R.ANGLE_MAX for a in angles):
            hint = (f"angles outside {R.ANGLE_MIN}..{R.ANGLE_MAX}: check the register map / byte order settings of "
                    "the driver")
        return ProbeResult(name, target, True, f"{block.name} {angles}", hint)
    finally:
        client.close()
