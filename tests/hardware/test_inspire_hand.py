"""Inspire RH56 driver against its emulator, through the real Modbus protocol (loopback TCP on ephemeral ports,
and Modbus RTU over a virtual serial cable)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pymodbus.client import ModbusTcpClient

from hardware.interfaces import DeviceError, DeviceTimeout, Hand, HandState, SafetyViolation
from hardware.inspire import registers as R
from hardware.inspire.config import InspireHandConfig
from hardware.inspire.driver import InspireHand
from hardware.inspire.emulator import InspireHandEmulator
from hardware.inspire.emulator_config import InspireEmulatorConfig
from hardware.inspire.plant import HandPlant, PlantCommand, PlantReading, speed_to_deg_per_s
from tests.helpers import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
OPEN = [1000.0] * 6




def hand_config(emu: InspireHandEmulator, **kw) -> InspireHandConfig:
    base = dict(host="127.0.0.1", port=emu.port, timeout=0.3, retries=1, reconnect_attempts=3,
                reconnect_delay_s=0.05, reconnect_delay_max_s=0.2, rate_hz=0)
    base.update(kw)
    return InspireHandConfig(**base)


@pytest.fixture
def emulator():
    emu = InspireHandEmulator(InspireEmulatorConfig(port=0)).start()
    yield emu
    emu.stop()


@pytest.fixture
def hand(emulator):
    """Direct mode (no loop): every call is a Modbus transaction."""
    h = InspireHand(hand_config(emulator))
    h.connect()
    yield h
    h.disconnect()


@pytest.fixture
def looped(emulator):
    """The default mode: the background loop at 100 Hz."""
    h = InspireHand(hand_config(emulator, rate_hz=100))
    h.connect()
    yield h
    h.disconnect()


# ------------------------------------------------------------------------------------- units
def test_register_encodings():
    assert R.bytes_to_registers([1, 2, 3, 4, 5, 6], "low_first") == [0x0201, 0x0403, 0x0605]
    assert R.bytes_to_registers([1, 2, 3, 4, 5, 6], "high_first") == [0x0102, 0x0304, 0x0506]
    for order in ("low_first", "high_first"):
        regs = R.encode_block(R.STATUS, [1, 2, 3, 4, 5, 6], order)
        assert R.decode_block(R.STATUS, regs, order).tolist() == [1, 2, 3, 4, 5, 6]
        # 16-bit values read as plain register values in both orders; FORCE_ACT is signed
        regs = R.encode_block(R.FORCE_ACT, [-1, -32768, 5, 0, 32767, 100], order)
        assert regs == [0xFFFF, 0x8000, 5, 0, 0x7FFF, 100]
        assert R.decode_block(R.FORCE_ACT, regs, order).tolist() == [-1, -32768, 5, 0, 32767, 100]
    assert R.decode_block(R.STATUS, [0x0201, 0x0403, 0x0605], "high_first").tolist() == [2, 1, 4, 3, 6, 5]
    # the map is byte-addressed: 16-bit blocks are 12 bytes, 8-bit blocks 6 bytes, and they do not overlap
    blocks = sorted(R.ALL_BLOCKS, key=lambda b: b.address)
    assert all(a.end <= b.address for a, b in zip(blocks, blocks[1:]))
    assert (R.ERROR.registers, R.ANGLE_SET.registers) == (3, 6)
    plan = R.READ_PLANS["contiguous"]
    assert [(s.address, s.registers) for s in plan] == [(1546, 6), (1582, 21)]
    assert R.READ_PLANS["single"][0].registers == 39
    assert R.error_names(0b10110) == {"over_temperature", "overcurrent", "communication"}
    assert R.error_names(0b100000) == {"unknown_bit5"}
    assert R.error_code({"stall", "motor"}) == 0b1001
    assert [R.status_name(c) for c in (0, 1, 2, 3, 5, 6, 7, 4)] == [
        "releasing", "grasping", "position_reached", "force_reached", "overcurrent", "stall", "fault", "unknown_4"]
    # the emulator's documented speed mapping: SPEED 1000 = full range in 1 s = 157.7 deg/s on a finger
    assert speed_to_deg_per_s([1000] * 6)[0] == pytest.approx(157.7)
    assert speed_to_deg_per_s([500] * 6, full_travel_time_s=2.0)[5] == pytest.approx(75.0 / 4)


@pytest.mark.parametrize("bad, fragment", [
    (dict(transport="can"), "transport"),
    (dict(port=0), "port"),
    (dict(device_id=0), "device_id"),
    (dict(timeout=float("nan")), "timeout"),
    (dict(retries=-1), "retries"),
    (dict(speed=0), "speed"),
    (dict(speed=[500] * 5), "speed"),
    (dict(force_limits=(500,) * 5), "force_limits"),
    (dict(force_limits=(500,) * 5 + (1001,)), "force_limits"),
    (dict(byte_order="middle"), "byte_order"),
    (dict(rate_hz=-1), "rate_hz"),
    (dict(read_plan="all"), "read_plan"),
    (dict(stale_hold_s=0), "stale_hold_s"),
    (dict(transport="rtu", serial_port=""), "serial_port"),
])
def test_config_rejects_bad_values(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        InspireHandConfig(**bad)


def test_config_defaults_and_from_mapping():
    c = InspireHandConfig()
    assert (c.transport, c.port, c.baudrate, c.device_id) == ("tcp", 6000, 115200, 1)
    assert c.speed == (1000,) * 6 and c.force_limits == (500,) * 6
    assert InspireHandConfig.from_mapping({"host": "10.0.0.2", "port": 6001}).endpoint.startswith("10.0.0.2:6001")
    with pytest.raises(ValueError, match="prot"):
        InspireHandConfig.from_mapping({"prot": 6000})


# ------------------------------------------------------------------------- driver vs emulator
def test_connect_applies_speed_and_force_limits(emulator):
    limits = (100, 200, 300, 400, 500, 600)
    with InspireHand(hand_config(emulator, speed=321, force_limits=limits)) as h:
        assert isinstance(h, Hand)
        assert h.read_hand_id() == 1
        targets = emulator.get_targets()
        assert targets.speeds.tolist() == [321] * 6
        assert targets.force_limits.tolist() == list(limits)
        state = h.read_state()
        assert isinstance(state, HandState)
        assert state.angles.tolist() == OPEN
        assert state.status == ("position_reached",) * 6
        assert not state.has_error


def test_emulator_is_byte_addressed_like_public_drivers_read_it(emulator):
    """ERROR+STATUS+TEMP read as one 9-register run at 1606 (field notes), with a plain pymodbus client."""
    emulator.inject_fault("overcurrent", ["ring"])
    client = ModbusTcpClient("127.0.0.1", port=emulator.port, timeout=1.0)
    assert client.connect()
    try:
        regs = client.read_holding_registers(1606, count=9, device_id=1).registers
        data = R.registers_to_bytes(regs, "low_first")
        assert list(data[0:6]) == [0, 4, 0, 0, 0, 0]  # ERROR: bit 2 overcurrent on the ring finger
        assert list(data[6:12]) == [2, 5, 2, 2, 2, 2]  # STATUS: position reached, overcurrent
        assert list(data[12:18]) == [32] * 6  # TEMP
        assert client.read_holding_registers(1612, count=3, device_id=1).registers == regs[3:6]
        assert client.read_holding_registers(1546, count=6, device_id=1).registers == [1000] * 6
        # ANGLE_SET -1 (0xFFFF) keeps that DoF's target
        assert not client.write_registers(1486, [500, 0xFFFF, 500, 500, 500, 500], device_id=1).isError()
        assert emulator.get_targets().angles.tolist() == [500, 1000, 500, 500, 500, 500]
        # reading past the end of the map, or writing a read-only block, is refused
        assert client.read_holding_registers(1620, count=3, device_id=1).isError()
        assert client.write_registers(1546, [0] * 6, device_id=1).isError()
    finally:
        client.close()


@pytest.mark.parametrize("plan", ["per_block", "single"])
def test_read_plans_give_the_same_state(emulator, plan):
    emulator.inject_fault("stall", ["middle"])
    emulator.set_contact("index", 900.0)
    with InspireHand(hand_config(emulator)) as h:
        h.set_angles([1000, 1000, 1000, 700, 1000, 1000])
        wait_until(lambda: h.read_state().status[3] == "force_reached")
        time.sleep(0.1)  # let it settle on the object (force_reached shows a few units early)
        a = h.read_state()
    with InspireHand(hand_config(emulator, read_plan=plan)) as h:
        b = h.read_state()
    assert a.forces[3] > 0 and a.errors[2] == {"stall"}
    assert a.angles.tolist() == b.angles.tolist() and a.forces.tolist() == b.forces.tolist()
    assert a.status == b.status and a.errors == b.errors and a.temperatures.tolist() == b.temperatures.tolist()


def test_angles_are_reached_at_the_set_speed(hand, emulator):
    hand.set_speed(500)  # 500 units/s with the emulator's 1 s full travel at speed 1000
    target = np.array([600, 650, 700, 750, 800, 600], dtype=float)
    t0 = time.monotonic()
    hand.set_angles(target)
    samples = []
    while time.monotonic() - t0 < 3.0:
        s = hand.read_state()
        samples.append((s.stamp, s.angles[0]))
        if all(st == "position_reached" for st in s.status):
            break
        time.sleep(0.02)
    final = hand.read_state()
    assert np.allclose(final.angles, target, atol=2)
    assert final.status == ("position_reached",) * 6
    mid = [(t, a) for t, a in samples if 650 < a < 950]  # pinky while clearly moving
    assert len(mid) >= 4, samples
    slope = np.polyfit([t for t, _ in mid], [a for _, a in mid], 1)[0]
    assert -600 < slope < -400, f"pinky closed at {slope:.0f} units/s, expected about -500"
    assert hand.read_targets().tolist() == target.tolist()


def test_finger_stalls_at_contact_when_force_reaches_limit(hand, emulator):
    hand.set_force_limits([300] * 6)
    emulator.set_contact("index", 600.0)  # stiffness 4 force units per angle unit -> stops at 600 - 300/4 = 525
    emulator.set_contact("pinky", 800.0, stiffness=2.0)  # -> stops at 800 - 150 = 650
    hand.set_angles([200] * 6)
    wait_until(lambda: (s := hand.read_state()) and s.status[1] == "position_reached"
               and s.status[3] == "force_reached" and s.status[0] == "force_reached")
    time.sleep(0.2)
    state = hand.read_state()
    assert state.status[3] == "force_reached" and state.status[0] == "force_reached"
    assert abs(state.angles[3] - 525) <= 2 and abs(state.angles[0] - 650) <= 2
    assert 290 <= state.forces[3] <= 310 and 290 <= state.forces[0] <= 310
    assert state.angles[1] == pytest.approx(200, abs=2) and state.forces[1] == 0  # no object: reaches target
    assert state.currents[3] > state.currents[1]  # pressing costs current
    hand.set_angles(OPEN)  # opening releases the object
    state = wait_until(lambda: (s := hand.read_state()) and s.status == ("position_reached",) * 6 and s)
    assert state.forces.tolist() == [0.0] * 6


@pytest.mark.parametrize("byte_order", ["low_first", "high_first"])
def test_status_errors_and_temperatures_are_decoded(byte_order):
    with InspireHandEmulator(InspireEmulatorConfig(port=0, byte_order=byte_order)) as emu:
        emu.inject_fault("overcurrent", ["pinky"])
        emu.inject_fault("stall", [2])
        emu.inject_fault("over_temperature", ["thumb_rotation"])
        with InspireHand(hand_config(emu, byte_order=byte_order)) as h:
            s = h.read_state()
            assert s.status == ("overcurrent", "position_reached", "stall", "position_reached", "position_reached",
                                "fault")
            assert s.errors == (frozenset({"overcurrent"}), frozenset(), frozenset({"stall"}), frozenset(),
                                frozenset(), frozenset({"over_temperature"}))
            assert s.has_error
            assert s.temperatures[5] >= 80 and s.temperatures[:5].tolist() == [32.0] * 5
            assert s.currents[0] >= 1500 and s.currents[2] >= 800
            h.clear_errors()  # CLEAR_ERROR shares a register with SAVE: the byte order decides which is set
            s = h.read_state()
            assert s.errors[:5] == (frozenset(),) * 5 and s.errors[5] == {"over_temperature"}  # still hot
            assert emu.truth().clear_error_writes == 1
        # the byte order matters: reading with the other one puts the codes on the wrong DoFs
        emu.inject_fault("overcurrent", ["pinky"])
        other = "high_first" if byte_order == "low_first" else "low_first"
        with InspireHand(hand_config(emu, byte_order=other)) as h:
            s = h.read_state()
            assert s.errors[0] == frozenset() and s.errors[1] == frozenset({"overcurrent"})


def test_clear_errors_holds_first_and_keeps_over_temperature_while_hot(hand, emulator):
    hand.set_angles([300] * 6)
    time.sleep(0.15)  # mid-motion
    emulator.inject_fault("overcurrent", [0])
    emulator.inject_fault("over_temperature", [4])
    s = hand.read_state()
    frozen_at = s.angles[0]
    assert "overcurrent" in s.errors[0] and "over_temperature" in s.errors[4]
    time.sleep(0.1)
    assert hand.read_state().angles[0] == frozen_at  # a faulted DoF halts
    hand.clear_errors()
    s = hand.read_state()
    assert s.errors[0] == frozenset()  # cleared
    assert s.errors[4] == frozenset({"over_temperature"})  # still hot: stays latched
    time.sleep(0.1)
    # clear_errors held first: the cleared DoF did not resume its old target (300)
    assert abs(hand.read_state().angles[0] - frozen_at) <= 2
    assert abs(emulator.get_targets().angles[0] - frozen_at) <= 2
    emulator.clear_fault("over_temperature")
    hand.clear_errors()
    assert not hand.read_state().has_error
    assert emulator.truth().clear_error_writes == 2


def test_device_refusal_is_a_device_error_naming_the_block(hand):
    with pytest.raises(DeviceError, match=r"ANGLE_SET.*illegal data value"):
        hand._write(R.ANGLE_SET, [1500] * 6)  # bypasses validation on purpose: the emulator refuses it
    with pytest.raises(DeviceError, match=r"ANGLE_ACT.*illegal data address"):
        hand._write(R.ANGLE_ACT, [500] * 6)  # read-only block


BAD_ANGLES = [
    [float("nan")] + [500.0] * 5,
    [500.0] * 5 + [float("inf")],
    [1001.0] + [500.0] * 5,
    [-1.0] + [500.0] * 5,
    [500.0] * 5,
    [[500.0] * 6],
    ["open"] * 6,
    None,
]


@pytest.mark.parametrize("bad", BAD_ANGLES)
def test_bad_angle_commands_are_refused_and_nothing_is_sent(hand, emulator, bad):
    writes = emulator.truth().angle_set_writes
    with pytest.raises(SafetyViolation):
        hand.set_angles(bad)
    assert emulator.truth().angle_set_writes == writes
    assert emulator.get_targets().angles.tolist() == OPEN


def test_bad_angle_commands_do_not_change_the_loop_target(looped, emulator):
    looped.set_angles([800] * 6)
    for bad in BAD_ANGLES:
        with pytest.raises(SafetyViolation):
            looped.set_angles(bad)
    assert looped.target.tolist() == [800] * 6
    wait_until(lambda: np.allclose(emulator.truth().angles, 800, atol=1), timeout=3.0)
    assert emulator.get_targets().angles.tolist() == [800] * 6


def test_bad_speed_and_force_limits_are_refused(hand, emulator):
    for call, value in ((hand.set_speed, 0), (hand.set_speed, [500] * 5), (hand.set_speed, 1500),
                        (hand.set_force_limits, 0), (hand.set_force_limits, 250.5), (hand.set_force_limits, -3),
                        (hand.set_speed, float("nan"))):
        with pytest.raises(SafetyViolation):
            call(value)
    t = emulator.get_targets()
    assert t.speeds.tolist() == [1000] * 6 and t.force_limits.tolist() == [500] * 6


# --------------------------------------------------------------------------------- comm faults
def test_dead_device_gives_device_error_naming_host_and_port():
    port = free_port()  # nothing listens here
    h = InspireHand(InspireHandConfig(host="127.0.0.1", port=port, timeout=0.3, reconnect_attempts=2,
                                      reconnect_delay_s=0.05))
    with pytest.raises(DeviceError, match=f"127.0.0.1:{port}") as info:
        h.connect()
    assert not isinstance(info.value, DeviceTimeout)
    assert not h.connected
    with pytest.raises(DeviceError, match="not connected"):
        h.read_state()


def test_dropped_connection_then_reconnect_reapplies_settings(emulator):
    h = InspireHand(hand_config(emulator, speed=400))
    h.connect()
    try:
        emulator.inject_fault("disconnect")
        with pytest.raises(DeviceError, match=f"127.0.0.1:{emulator.port}") as info:
            h.read_state()
        assert not isinstance(info.value, DeviceTimeout)
        with pytest.raises(DeviceError):
            h.set_angles([500] * 6)
        emulator.reset()  # the hand "power-cycled" while away: speed back to 1000
        assert emulator.get_targets().speeds.tolist() == [1000] * 6
        emulator.clear_fault("disconnect")
        assert h.read_state().angles.tolist() == OPEN  # reconnects by itself
        assert h.reconnects >= 1
        assert emulator.get_targets().speeds.tolist() == [400] * 6  # settings re-applied on reconnect
        h.set_angles([500] * 6)
        assert emulator.get_targets().angles.tolist() == [500] * 6
    finally:
        h.disconnect()


def test_connection_glitch_is_transparent(emulator):
    with InspireHand(hand_config(emulator, reconnect_attempts=8)) as h:
        h.read_state()
        emulator.drop_connections()  # the server closes our socket but keeps listening
        time.sleep(0.05)
        assert h.read_state().angles.tolist() == OPEN
        assert h.reconnects == 1
        # refused for a moment, back within the reconnect window: still transparent
        emulator.inject_fault("disconnect")
        restorer = threading.Timer(0.15, emulator.clear_fault, args=("disconnect",))
        restorer.start()
        try:
            assert h.read_state().angles.tolist() == OPEN
        finally:
            restorer.join()
        assert h.reconnects == 2


def test_unresponsive_device_gives_device_timeout_then_recovers(hand, emulator):
    emulator.inject_fault("unresponsive")
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=rf"127.0.0.1:{emulator.port}.*did not answer read ANGLE_ACT"):
        hand.read_state()
    elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed < 5.0  # (retries + 1) * timeout, bounded
    emulator.clear_fault("unresponsive")
    assert hand.read_state().angles.tolist() == OPEN


def test_slow_replies_within_timeout_work_and_beyond_it_time_out(hand, emulator):
    emulator.inject_fault("slow", delay_s=0.1)
    t0 = time.monotonic()
    hand.set_angles([900] * 6)
    assert time.monotonic() - t0 >= 0.1
    assert emulator.get_targets().angles.tolist() == [900] * 6
    emulator.inject_fault("slow", delay_s=0.6)  # timeout is 0.3
    with pytest.raises(DeviceTimeout, match="did not answer"):
        hand.read_angles()
    emulator.clear_fault("slow")
    assert len(hand.read_angles()) == 6


def test_reconnect_disabled_fails_fast_after_a_drop(emulator):
    h = InspireHand(hand_config(emulator, reconnect=False))
    h.connect()
    try:
        emulator.inject_fault("disconnect")
        with pytest.raises(DeviceError):
            h.read_state()
        emulator.clear_fault("disconnect")
        with pytest.raises(DeviceError, match="reconnect is disabled"):
            h.read_state()
    finally:
        h.disconnect()
    h.connect()  # an explicit reconnect works
    assert h.read_state().angles.tolist() == OPEN
    h.disconnect()


# ------------------------------------------------------------------------------------- loop
def test_loop_resends_the_last_target_when_commands_stop(emulator):
    with InspireHand(hand_config(emulator, rate_hz=100, speed=500)) as h:
        h.set_angles([400] * 6)  # one command, then silence
        t0 = time.monotonic()
        state = wait_until(lambda: (s := h.read_state()) and np.allclose(s.angles, 400, atol=2) and s, 4.0)
        assert state.status == ("position_reached",) * 6  # it went all the way: commands stopping is no hold
        elapsed = time.monotonic() - t0
        assert elapsed >= 1.0 and elapsed <= 3.0  # 600 units at 500 units/s
        w0 = emulator.truth().angle_set_writes
        time.sleep(0.3)
        truth = emulator.truth()
        assert truth.angle_set_writes - w0 >= 10  # still re-sending at the loop rate
        assert emulator.get_targets().angles.tolist() == [400] * 6 and np.allclose(truth.angles, 400, atol=1)
        assert h.hold_reason is None and h.last_error is None
        stats = h.loop_stats()
        assert stats.cycles >= 100 and stats.failed_cycles == 0 and stats.achieved_rate_hz > 50


def test_hold_sets_target_to_measured_angles_mid_motion(looped, emulator):
    looped.set_speed(300)
    looped.set_angles([0] * 6)
    time.sleep(0.5)
    looped.hold()
    held = looped.target.copy()
    assert np.all(held < 1000) and np.all(held > 0)  # mid-way, not the commanded 0
    assert looped.hold_reason == "hold() requested"
    time.sleep(0.3)
    truth = emulator.truth()
    assert np.allclose(truth.angles, held, atol=3)  # stopped where it was
    assert np.allclose(emulator.get_targets().angles, held, atol=0)
    looped.set_angles([1000] * 6)  # a new command resumes
    wait_until(lambda: emulator.truth().angles[0] > held[0] + 30, timeout=3.0)
    assert looped.hold_reason is None


def test_optional_stale_hold_stops_when_commands_stop(emulator):
    with InspireHand(hand_config(emulator, rate_hz=100, speed=200, stale_hold_s=0.2)) as h:
        h.set_angles([0] * 6)
        wait_until(lambda: h.hold_reason is not None, timeout=3.0)
        assert "no new target" in h.hold_reason
        time.sleep(0.2)
        a1 = emulator.truth().angles
        time.sleep(0.3)
        a2 = emulator.truth().angles
        assert np.allclose(a1, a2, atol=1) and np.all(a2 > 800)  # held near where it was after ~0.2 s


@pytest.mark.parametrize("fault", ["stall", "overcurrent", "over_temperature"])
def test_loop_holds_on_device_error_and_refuses_targets_until_cleared(looped, emulator, fault):
    looped.set_angles([400] * 6)
    time.sleep(0.1)
    emulator.inject_fault(fault, ["middle"])
    wait_until(lambda: looped.device_fault is not None, timeout=3.0)
    assert fault in looped.device_fault and "middle" in looped.device_fault
    time.sleep(0.1)
    angles = emulator.truth().angles
    assert np.all(angles > 420)  # every DoF held well before the target
    assert np.allclose(emulator.get_targets().angles, angles, atol=2)
    assert "device error" in looped.hold_reason
    with pytest.raises(DeviceError, match="clear_errors"):
        looped.set_angles([400] * 6)
    if fault == "over_temperature":
        looped.clear_errors()  # still hot: the error stays, so the loop holds again
        assert looped.read_state().errors[2] == {"over_temperature"}
        wait_until(lambda: looped.device_fault is not None, timeout=2.0)
        emulator.clear_fault("over_temperature")
    looped.clear_errors()
    assert looped.device_fault is None and not looped.read_state().has_error
    looped.set_angles([400] * 6)
    wait_until(lambda: abs(emulator.truth().angles[2] - 400) <= 2, timeout=3.0)


def test_loop_reports_a_dropped_hand_and_holds_after_it_comes_back(emulator):
    with InspireHand(hand_config(emulator, rate_hz=50, reconnect_attempts=2, speed=100)) as h:
        h.set_angles([0] * 6)
        time.sleep(0.1)
        emulator.inject_fault("disconnect")
        wait_until(lambda: h.last_error is not None, timeout=5.0)
        with pytest.raises(DeviceError, match=f"link is down.*127.0.0.1:{emulator.port}"):
            h.read_state()
        with pytest.raises(DeviceError, match="link is down"):
            h.set_angles([0] * 6)
        assert "communication failed" in h.hold_reason
        with pytest.raises(DeviceError, match="unreachable"):
            h.hold()  # cannot hold an unreachable hand: says so
        emulator.clear_fault("disconnect")
        wait_until(lambda: h.last_error is None, timeout=5.0)
        # first thing after the link returned: targets := measured, not the old target 0
        assert "link restored" in h.hold_reason
        assert np.allclose(emulator.get_targets().angles, emulator.truth().angles, atol=3)
        assert emulator.get_targets().angles[0] > 500
        assert h.read_state().angles[0] > 500
        h.set_angles([900] * 6)  # accepted again
        assert h.hold_reason is None


def test_loop_reports_an_unresponsive_hand_as_timeout(emulator):
    with InspireHand(hand_config(emulator, rate_hz=50, timeout=0.15, retries=0)) as h:
        emulator.inject_fault("unresponsive")
        wait_until(lambda: h.last_error is not None, timeout=3.0)
        with pytest.raises(DeviceTimeout, match="did not answer"):
            h.read_state()
        emulator.clear_fault("unresponsive")
        wait_until(lambda: h.last_error is None, timeout=3.0)
        assert h.read_state().angles.tolist() == OPEN


# ----------------------------------------------------------------------- plant hook / CLI / RTU
class HalfwayPlant:
    """A stand-in for a physics plant: an object stops every DoF halfway between open and its target (once
    time has passed), pushing back with 1 force unit per angle unit; halted DoFs stay put."""

    def __init__(self):
        self.angles = np.full(6, 1000.0)
        self.commands: list[PlantCommand] = []

    def step(self, dt: float, command: PlantCommand) -> PlantReading:
        self.commands.append(command)
        if dt > 0:
            self.angles = np.where(command.halted, self.angles, (1000.0 + command.angles) / 2)
        return PlantReading(self.angles.copy(), 1000.0 - self.angles, currents=np.arange(6) * 10.0)


def test_custom_plant_drives_what_the_driver_reads():
    plant = HalfwayPlant()
    assert isinstance(plant, HandPlant)
    with InspireHandEmulator(InspireEmulatorConfig(port=0), plant=plant) as emu:
        with InspireHand(hand_config(emu, speed=250, force_limits=300)) as h:
            h.set_angles([0, 200, 400, 600, 800, 1000])
            cmd = plant.commands[-1]
            assert cmd.angles.tolist() == [0, 200, 400, 600, 800, 1000]
            assert cmd.speeds.tolist() == [250] * 6 and cmd.units_per_s.tolist() == [250.0] * 6
            assert cmd.force_limits.tolist() == [300] * 6 and not cmd.halted.any()
            s = h.read_state()
            assert s.angles.tolist() == [500, 600, 700, 800, 900, 1000]
            assert s.forces.tolist() == [500, 400, 300, 200, 100, 0]
            assert s.currents.tolist() == [0, 10, 20, 30, 40, 50]
            assert s.status[0] == "force_reached" and s.status[5] == "position_reached"
            emu.inject_fault("stall", [1])
            h.read_state()
            assert plant.commands[-1].halted.tolist() == [False, True, False, False, False, False]
    with pytest.raises(TypeError):
        InspireHandEmulator(InspireEmulatorConfig(port=0), plant=object())


def test_external_plant_fed_by_the_world():
    with InspireHandEmulator(InspireEmulatorConfig(port=0, external_physics=True)) as emu:
        with InspireHand(hand_config(emu, force_limits=250)) as h:
            h.set_angles([100, 200, 300, 400, 500, 600])
            assert emu.get_targets().angles.tolist() == [100, 200, 300, 400, 500, 600]
            time.sleep(0.05)
            assert h.read_state().angles.tolist() == OPEN  # nothing moves until the world says so
            emu.set_actual([100, 200, 350, 700, 800, 900], [0, 0, 260, 10, 0, 0], currents=[5, 6, 7, 8, 9, 10])
            s = h.read_state()
            assert s.angles.tolist() == [100, 200, 350, 700, 800, 900]
            assert s.forces.tolist() == [0, 0, 260, 10, 0, 0] and s.currents.tolist() == [5, 6, 7, 8, 9, 10]
            assert s.status[:4] == ("position_reached", "position_reached", "force_reached", "grasping")
        with pytest.raises(ValueError):
            emu.set_actual([0] * 5, [0] * 6)
        with pytest.raises(RuntimeError, match="KinematicPlant"):
            emu.set_contact(0, 500)
    with InspireHandEmulator(InspireEmulatorConfig(port=0)) as emu:
        with pytest.raises(RuntimeError, match="ExternalPlant"):
            emu.set_actual([0] * 6, [0] * 6)


def test_emulator_command_line_serves_the_driver():
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "hardware.inspire.emulator", "--port", str(port),
                             "--contact", "none,none,none,500,none,none"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line
        with InspireHand(InspireHandConfig(host="127.0.0.1", port=port, timeout=1.0)) as h:
            h.set_angles([1000, 1000, 1000, 300, 1000, 1000])
            s = wait_until(lambda: (st := h.read_state()) and st.status[3] == "force_reached" and st)
            assert 300 < s.angles[3] < 500 and s.forces[3] > 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


@pytest.mark.parametrize("case", ["in use", "out of range"])
def test_emulator_command_line_bad_port_is_one_line_and_exit_2(case):
    """A port another program listens on, or one out of range: one line on stderr naming the port, exit code 2, no
    traceback (and the emulator does not start)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with socket.socket() as busy:
        if case == "in use":
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
        else:
            port = 70000
        proc = subprocess.run([sys.executable, "-m", "hardware.inspire.emulator", "--port", str(port)], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("jala-inspire-emulator: ") and f"port {port}" in lines[0] and case in lines[0]


def test_emulator_command_line_port_taken_after_the_check_is_one_line_too(monkeypatch, capsys):
    """The port is free when checked but taken before the listen (a race): still one line and exit code 2."""
    from hardware.inspire import emulator_cli as emulator_module

    real_check = emulator_module._tcp_listen_problem
    calls = []

    def check_then_race(host, port):
        calls.append(port)
        return None if len(calls) == 1 else real_check(host, port)

    monkeypatch.setattr(emulator_module, "_tcp_listen_problem", check_then_race)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert emulator_module.main(["--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"jala-inspire-emulator: port {port} is in use on 127.0.0.1 "
                                        "(another emulator or hand bridge?)"], err
    assert len(calls) == 2


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX pseudo-terminals")
def test_rtu_over_a_virtual_serial_cable():
    from hardware.inspire.virtual_serial import VirtualSerialPair

    with VirtualSerialPair() as cable:
        emu = InspireHandEmulator(InspireEmulatorConfig(transport="rtu", serial_port=cable.port_a)).start()
        try:
            cfg = InspireHandConfig(transport="rtu", serial_port=cable.port_b, timeout=0.5, speed=800, rate_hz=50)
            with InspireHand(cfg) as h:
                assert "Modbus RTU" in h.endpoint
                assert emu.get_targets().speeds.tolist() == [800] * 6
                h.set_angles([700] * 6)
                s = wait_until(lambda: (st := h.read_state()) and st.angles.tolist() == [700] * 6 and st)
                assert s.status == ("position_reached",) * 6
                emu.inject_fault("overcurrent", ["index"])
                wait_until(lambda: h.device_fault is not None, timeout=2.0)
                assert h.read_state().errors[3] == frozenset({"overcurrent"})
                emu.inject_fault("unresponsive")
                wait_until(lambda: h.last_error is not None, timeout=3.0)
                with pytest.raises(DeviceTimeout):
                    h.read_state()
                emu.clear_fault("unresponsive")
                wait_until(lambda: h.last_error is None, timeout=3.0)
                h.clear_errors()
                assert not h.read_state().has_error
        finally:
            emu.stop()
