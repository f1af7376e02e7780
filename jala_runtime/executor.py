"""Following chunks on the devices: one ``DeviceFollower`` per device (``ArmFollower``, ``HandFollower``) and a
``ChunkExecutor`` that drives both.

The rules, the same on the robot (one follower per device node) and in the simulated evaluation:
- A hold wins over anything queued: ``hold(reason)`` makes the device hold position and every chunk is refused
  until ``recover()`` clears the device's errors. A chunk computed from an observation taken before the last
  recover is refused too, so nothing queued before a reset runs after it.
- A chunk whose observation is older than ``max_chunk_age_s`` is skipped (late, not malformed: no hold).
  Waypoints due within ``min_lead_s`` are dropped; a chunk with none left is skipped.
- A malformed chunk (NaN, missing joints, hand targets outside 0..1000) or one the device refuses (the FR3 safety
  gate) is never executed: the device holds, the follower records the fault and refuses chunks until recovered.
- Stall guard: ``check_stall()`` is called every few ms by the owner's watch thread and before each chunk; when
  the process's threads stood still for longer than ``stall_hold_s``, the device holds before anything queued
  during the stall can run.
- The hand follows its waypoints on a schedule: during (t[i-1], t[i]] it is commanded to ``angles[i]``, the
  target it must reach at t[i] (``tick(now)``; a ``HandTicker`` thread calls it on the robot, the simulated
  evaluation once per action step). A new chunk replaces the schedule.

Counters (the device nodes publish them in their diagnostics): ``chunks_executed``; ``chunks_refused``, every
chunk not run, for whatever reason; ``chunks_skipped_late``, those of them skipped for timing only (stale, past
its last waypoint, computed before the last recover); ``last_refusal``, why the last one was not run.

Times are on the chunks' clock (``now`` arguments); the stall guard uses ``time.monotonic()``. Events (holds,
refusals, skips, recoveries) go to ``on_event(level, message)`` ("info" | "warn" | "error") for the owner to log.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embodiment import ARM_JOINT_NAMES, HAND_JOINT_NAMES, HAND_RANGE
from hardware.interfaces import SafetyViolation

from .chunk import ChunkError, TimedChunk

EventSink = Callable[[str, str], None]


@dataclass
class FollowerConfig:
    max_chunk_age_s: float = 1.0  # a chunk whose observation is older than this is skipped (stale)
    min_lead_s: float = 0.0  # waypoints due sooner than this are dropped
    stall_hold_s: float = 0.25  # threads stopped longer than this: hold at once on resume
    # hand schedule: a waypoint due within this counts as reached (clock granularity, e.g. 2 ms physics steps)
    schedule_tolerance_s: float = 0.002


class DeviceFollower:
    """The hold latch, the refusal rules and the stall guard for one device; subclasses execute."""

    label = "device"
    joint_names: tuple[str, ...] = ()

    def __init__(self, device, config: FollowerConfig | None = None, on_event: EventSink | None = None,
                 clock: Callable[[], float] = time.time):
        self.device = device
        self.config = config or FollowerConfig()
        self.on_event = on_event or (lambda level, message: None)
        self.clock = clock  # the chunks' clock: stamps holds and recoveries
        self.lock = threading.RLock()
        self.held = False
        self.hold_reason = ""
        self.hold_stamp = 0.0  # time (chunk clock) at which the device accepted the hold command
        self.fault = ""  # non-empty: an ERROR-level condition (refused chunk, device error)
        self.chunks_executed = 0
        self.chunks_refused = 0  # every chunk not run: held, malformed, gate, device error, and the skips below
        self.chunks_skipped_late = 0  # of those, skipped for timing only: stale, past its last waypoint, pre-recover
        self.last_refusal = ""  # why the last chunk was not run ('' until one was not)
        self.waypoints_dropped = 0
        self.recovered_at = -float("inf")  # chunks from observations before this are refused
        self._tick = time.monotonic()
        self._tick_lock = threading.Lock()

    # ------------------------------------------------------------------------------ device hooks
    def _execute(self, chunk: TimedChunk, now: float) -> None:
        raise NotImplementedError

    def _hold_device(self) -> None:
        raise NotImplementedError

    def _recover_device(self) -> str:
        """Clear the device's errors; '' when it is fine afterwards, else why not."""
        raise NotImplementedError

    def _validate(self, part: TimedChunk) -> None:
        """Raise ChunkError when the device's columns are unacceptable."""

    # ------------------------------------------------------------------------------ the stall guard
    def attach(self, device) -> None:
        """Give the follower its device (connected after the follower was made: the robot nodes' startup). The
        stall guard counts from here: nothing could be queued for a device before it was attached, and connecting
        (imports, the driver's handshake) may keep the watch thread off the interpreter for a while."""
        with self.lock, self._tick_lock:
            self._tick = time.monotonic()
            self.device = device

    def check_stall(self) -> bool:
        """Hold when the owner's threads stood still for longer than ``stall_hold_s`` since the last check; True
        when it held. The tick has its own lock, never held across a device call: a call that keeps ``lock`` for a
        while (the FR3's hold waits about 0.25 s for the arm to come to rest) is not a stall of the process."""
        with self._tick_lock:
            mono = time.monotonic()
            gap, self._tick = mono - self._tick, mono
        if gap > self.config.stall_hold_s and self.device is not None:
            self.set_fault(f"{self.label} node stalled for {gap:.2f} s (process stopped or starved): holding before "
                           "anything queued runs")
            return True
        return False

    # ------------------------------------------------------------------------------ the hold latch
    def hold(self, reason: str) -> bool:
        """Hold position and refuse chunks until recover(); True on the first hold (the one that sets the reason)."""
        with self.lock:
            first = not self.held
            try:
                if self.device is not None:
                    self._hold_device()
            except Exception as exc:  # noqa: BLE001 - reported; the latch still closes
                self.on_event("error", f"{self.label} hold failed: {exc}")
                self.fault = self.fault or f"hold failed: {exc}"
            if first:
                self.hold_stamp = self.clock()  # after the device accepted the hold
                self.hold_reason = reason
            self.held = True
        if first:
            self.on_event("warn", f"HOLD: {reason}")
        return first

    def set_fault(self, reason: str, hold: bool = True) -> None:
        self.fault = reason
        if hold:
            self.hold(reason)

    def record_not_run(self, reason: str, late: bool = False) -> None:
        """Count a chunk that does not run and keep why (diagnostics: ``last_refusal``)."""
        self.chunks_refused += 1
        self.chunks_skipped_late += int(late)
        self.last_refusal = reason

    def refused_while_held(self) -> bool:
        """Call under ``lock`` before anything else with a new chunk: True (the chunk counted as not run, with
        why) when the device is held, its threads stalled, or it has no device."""
        if self.check_stall() or self.held or self.device is None:
            self.record_not_run(f"held ({self.hold_reason})" if self.held else "no device")
            return True
        return False

    def refuse(self, reason: str) -> None:
        """A chunk that must not run (malformed, or refused by the device): count it, report, hold."""
        self.record_not_run(reason)
        self.on_event("error", reason)
        self.set_fault(reason)

    def recover(self) -> tuple[bool, str]:
        with self.lock:
            try:
                problem = self._recover_device() if self.device is not None else ""
            except Exception as exc:  # noqa: BLE001
                return False, f"recover failed: {exc}"
            if problem:
                return False, problem
            self.recovered_at = self.clock()
            self.held = False
            self.fault = ""
            self.hold_reason = ""
        self.on_event("info", "recovered: accepting chunks")
        return True, "recovered"

    # ------------------------------------------------------------------------------ chunks
    def refusal(self, stamp: float, now: float) -> str:
        """Why a chunk from the observation at ``stamp`` must not run now although the device is not held ('' = it
        may): computed before the last recover, or stale. (``submit`` checks the hold and the stall guard first,
        under the same lock.)"""
        if stamp < self.recovered_at:
            return "computed before the last recover"
        if now - stamp > self.config.max_chunk_age_s:
            return f"stale: its observation is {now - stamp:.3f} s old (max_chunk_age_s {self.config.max_chunk_age_s})"
        return ""

    def submit(self, chunk: TimedChunk, now: float) -> bool:
        """Execute this device's columns of ``chunk`` (a new chunk preempts the running one); True when it runs."""
        with self.lock:
            if self.refused_while_held():
                return False
            try:
                part = chunk.select(self.joint_names)
                self._validate(part)
            except ChunkError as exc:
                self.refuse(f"refused chunk: {exc}")
                return False
            why = self.refusal(part.stamp, now)
            if why:  # late or from before a reset, not malformed: skip it, keep going
                self.record_not_run(f"skipped: {why}", late=True)
                self.on_event("warn", f"skipping a chunk: {why}")
                return False
            ahead, dropped = part.upcoming(now, self.config.min_lead_s)
            self.waypoints_dropped += dropped
            if ahead is None:
                late = f"chunk arrived after its last waypoint ({now - part.times[-1]:.3f} s late)"
                self.record_not_run(f"skipped: {late}", late=True)
                self.on_event("warn", f"{late}; skipped")
                return False
            try:
                self._execute(ahead, now)
            except SafetyViolation as exc:
                self.refuse(f"safety gate refused chunk: {exc}")
                return False
            except Exception as exc:  # noqa: BLE001
                self.refuse(f"{self.label} error: {exc}")
                return False
            self.chunks_executed += 1
            return True


class ArmFollower(DeviceFollower):
    """The FR3 columns of each chunk go to ``Arm.execute`` as they are (absolute times + ``now``)."""

    label = "arm"
    joint_names = ARM_JOINT_NAMES

    def _execute(self, chunk: TimedChunk, now: float) -> None:
        self.device.execute(chunk, now)

    def _hold_device(self) -> None:
        self.device.hold()

    def _recover_device(self) -> str:
        self.device.recover()
        st = self.device.read_state()
        return f"arm still in error after recover: {st.error_message}" if st.in_error else ""


class HandFollower(DeviceFollower):
    """The Inspire columns of each chunk become the hand's waypoint schedule, played by ``tick(now)``."""

    label = "hand"
    joint_names = HAND_JOINT_NAMES

    def __init__(self, device, config: FollowerConfig | None = None, on_event: EventSink | None = None,
                 clock: Callable[[], float] = time.time):
        super().__init__(device, config, on_event, clock)
        self._schedule: TimedChunk | None = None
        self._next_index = 0
        self.commands_sent = 0
        self.changed = threading.Condition(self.lock)  # notified when the schedule changes

    def _validate(self, part: TimedChunk) -> None:
        lo, hi = HAND_RANGE
        a = part.positions
        if a.min() < lo or a.max() > hi:
            raise ChunkError(f"hand targets outside {lo:.0f}..{hi:.0f}: min {a.min():.1f}, max {a.max():.1f}")

    def _execute(self, chunk: TimedChunk, now: float) -> None:
        self._schedule, self._next_index = chunk, 0
        self.changed.notify_all()

    def clear(self) -> None:
        with self.lock:
            self._schedule = None
            self.changed.notify_all()

    def _hold_device(self) -> None:
        self.clear()
        self.device.hold()

    def _recover_device(self) -> str:
        self.device.clear_errors()
        st = self.device.read_state()
        return f"hand still reports errors after clear_errors: {st.errors}" if st.has_error else ""

    def tick(self, now: float) -> float | None:
        """Send the target due at ``now`` if not sent yet. Returns the seconds until the next waypoint is due
        (None when there is no schedule). A device error clears the schedule and holds (fault)."""
        with self.lock:
            s = self._schedule
            if s is None:
                return None
            i = int(np.searchsorted(s.times, now + self.config.schedule_tolerance_s, side="left"))
            if i >= s.horizon:  # past the last waypoint: its target stays commanded
                self._schedule = None
                return None
            send = None
            if i >= self._next_index:
                send = s.positions[i]
                self._next_index = i + 1
            wait = max(0.0, s.times[i] - now)
            if send is not None:
                try:
                    self.device.set_angles(send)
                    self.commands_sent += 1
                except Exception as exc:  # noqa: BLE001 - reported, then the schedule is dropped
                    self._schedule = None
                    self.set_fault(f"hand refused a target: {exc}")
                    return None
        return wait


class HandTicker:
    """The thread that plays a ``HandFollower``'s schedule on the robot: ticks at each waypoint (at most every
    ``period`` s), sleeps while there is no schedule."""

    def __init__(self, follower: HandFollower, clock: Callable[[], float], period: float = 0.005):
        self.follower = follower
        self.clock = clock
        self.period = period
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="hand-ticker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        f = self.follower
        while True:
            with f.lock:
                while not self._stop and f._schedule is None:
                    f.changed.wait()
                if self._stop:
                    return
            wait = f.tick(self.clock())
            if wait is not None:
                with f.lock:
                    if not self._stop:
                        f.changed.wait(timeout=max(min(wait, self.period), 0.001))

    def close(self) -> None:
        with self.follower.lock:
            self._stop = True
            self.follower.changed.notify_all()
        self._thread.join(timeout=1.0)


class ChunkExecutor:
    """Arm and hand together (one process: the simulated evaluation; on the robot each device node owns its
    follower). A hold or fault on either holds both."""

    def __init__(self, arm, hand, arm_config: FollowerConfig | None = None, hand_config: FollowerConfig | None = None,
                 on_event: EventSink | None = None, clock: Callable[[], float] = time.time):
        self.arm = ArmFollower(arm, arm_config, on_event, clock)
        self.hand = HandFollower(hand, hand_config, on_event, clock)

    @property
    def followers(self) -> tuple[DeviceFollower, DeviceFollower]:
        return self.arm, self.hand

    @property
    def fault(self) -> str:
        return self.arm.fault or self.hand.fault

    @property
    def held(self) -> bool:
        return self.arm.held or self.hand.held

    def submit(self, chunk: TimedChunk, now: float) -> bool:
        """Both devices take their columns; when either refuses the chunk as unsafe, both hold."""
        ok = self.arm.submit(chunk, now) and self.hand.submit(chunk, now)
        if not ok and self.fault:
            for f in self.followers:
                if not f.held:
                    f.hold(self.fault)
        return ok

    def tick(self, now: float) -> None:
        self.hand.tick(now)
        if self.hand.fault and not self.arm.held:
            self.arm.hold(self.hand.fault)

    def hold(self, reason: str) -> None:
        for f in self.followers:
            f.hold(reason)

    def recover(self) -> tuple[bool, str]:
        for f in self.followers:
            ok, msg = f.recover()
            if not ok:
                return False, f"{f.label}: {msg}"
        return True, "recovered"
