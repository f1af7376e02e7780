"""FR3 chunk tracking through the JALA driver (franky-control) against franky-sim: prints figures.

A smooth joint reference q_ref(t) = q0 + env(t) A (sin(2 pi f t + phi) - sin phi) (per-joint amplitudes and
phases, faded in over 1 s so it starts at rest) is cut into 16-step
chunks at 15 Hz (the policy's action rate: waypoints 1/15 s apart). A new chunk, sampled from the reference at
the robot's current time, is submitted every ``--replan-every`` steps and preempts the running one.

Figures printed
* tracking error at the waypoints [rad]: for every waypoint that ran before its chunk was preempted, the largest
  joint error between the target and (a) the commanded position q_d (what franky/libfranka asked for: driver +
  planner fidelity) and (b) the measured q (adds the plant: franky-sim's joint PD trails the command by about
  0.1 s x velocity; a real FR3 tracks far tighter). Times are robot-clock times (franky-sim runs slower than
  real time on a loaded machine, so wall-clock comparisons would blame the simulator's speed on the driver).
* preemption gap: from execute() being called to the first 1 kHz control cycle of the new motion (wall clock),
  and how long execute() itself takes (safety gate + motion build + robot.move).
* speed across each hand-over: the smallest commanded speed within +-50 ms of a switch relative to the
  reference speed there (1.0 = no slowdown; a stop-and-go would show ~0); only hand-overs where the reference
  moves at >= 30 % of its peak speed count.
* state read rate: read_state() calls per second, idle and while a chunk runs.

Run:  .venv/bin/python benchmarks/franka_chunk_tracking.py                      (starts franky-sim itself)
      .venv/bin/python benchmarks/franka_chunk_tracking.py --robot-ip 127.0.0.1   (a franky-sim already running)
Never point it at a real robot without a clear workspace: it moves every joint by up to 2 x amplitude.
"""
from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from embodiment import ARM_JOINT_NAMES
from hardware.franka.arm import FrankaArm
from hardware.franka.config import FrankaArmConfig
from hardware.franka.sim_server import FrankySimProcess
from jala_runtime.chunk import TimedChunk

ACTION_RATE_HZ = 15.0
CHUNK_STEPS = 16
PHASES = np.array([0.0, 0.7, 1.4, 2.1, 2.8, 3.5, 4.2])
AMP_SHAPE = np.array([1.0, 0.8, 1.0, 1.0, 1.2, 1.0, 1.5])


class StateLog(threading.Thread):
    def __init__(self, robot, period_s: float):
        super().__init__(daemon=True)
        self.robot, self.period_s, self.rows, self.stop_evt = robot, period_s, [], threading.Event()

    def run(self):
        while not self.stop_evt.is_set():
            s = self.robot.state
            self.rows.append((s.time.to_sec(), np.asarray(s.q).copy(), np.asarray(s.q_d).copy(),
                              np.asarray(s.dq_d).copy()))
            time.sleep(self.period_s)

    def arrays(self):
        t = np.array([r[0] for r in self.rows])
        order = np.argsort(t, kind="stable")
        t, idx = np.unique(t[order], return_index=True)
        rows = [self.rows[order[i]] for i in idx]
        return t, np.array([r[1] for r in rows]), np.array([r[2] for r in rows]), np.array([r[3] for r in rows])


def interp(t_query, t, X):
    return np.stack([np.interp(t_query, t, X[:, j]) for j in range(X.shape[1])], axis=-1)


def pct(x, p):
    return float(np.percentile(x, p)) if len(x) else float("nan")


def read_rate(arm: FrankaArm, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        arm.read_state()
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robot-ip", default=None, help="connect here instead of starting franky-sim")
    ap.add_argument("--chunks", type=int, default=20, help="number of chunks to submit")
    ap.add_argument("--replan-every", type=int, default=8, help="steps between chunk submissions (1..16)")
    ap.add_argument("--amplitude", type=float, default=0.15, help="reference amplitude [rad] (x per-joint shape)")
    ap.add_argument("--frequency", type=float, default=0.3, help="reference frequency [Hz]")
    ap.add_argument("--dynamics", type=float, default=0.5, help="relative dynamics factor")
    ap.add_argument("--log-period", type=float, default=0.002, help="state log period [s]")
    args = ap.parse_args()
    if not 1 <= args.replan_every <= CHUNK_STEPS:
        ap.error("--replan-every must be 1..16")

    sim = None
    ip = args.robot_ip
    if ip is None:
        sim = FrankySimProcess()
        ip = sim.start()
    try:
        run(args, ip, simulated=sim is not None)
    finally:
        if sim is not None:
            sim.stop()


def run(args, ip: str, simulated: bool) -> None:
    cfg = FrankaArmConfig(robot_ip=ip, realtime="ignore" if simulated else "enforce",
                          relative_dynamics_factor=args.dynamics, record_motion_start=True)
    arm = FrankaArm(cfg)
    arm.connect()
    robot = arm.robot
    dt = 1.0 / ACTION_RATE_HZ
    steps = dt * np.arange(1, CHUNK_STEPS + 1)
    amp = args.amplitude * AMP_SHAPE
    w = 2 * np.pi * args.frequency

    q0 = arm.read_state().q
    idle_rate = read_rate(arm, 1.0)

    def q_ref(t):
        """Starts at rest at q0: a 1 s smoothstep envelope fades the phase-shifted sinusoids in."""
        t = np.asarray(t, dtype=float)[..., None]
        s = np.clip(t / 1.0, 0.0, 1.0)
        env = 3 * s**2 - 2 * s**3
        return q0 + env * amp * (np.sin(w * t + PHASES) - np.sin(PHASES))

    def dq_ref(t, h=1e-4):
        return (q_ref(t + h) - q_ref(t - h)) / (2 * h)

    log = StateLog(robot, args.log_period)
    log.start()
    records = []
    t_ref0 = robot.state.time.to_sec()
    wall0 = time.monotonic()
    busy_rate = None
    for k in range(args.chunks):
        t_rel = robot.state.time.to_sec() - t_ref0  # reference clock = robot clock
        stamp = time.monotonic()  # waypoints at ``steps`` after now, as the driver sees them
        chunk = TimedChunk.from_relative(stamp, steps, q_ref(t_rel + steps), ARM_JOINT_NAMES)
        t_call = time.monotonic()
        arm.execute(chunk, stamp)
        t_back = time.monotonic()
        rec = arm.last_motion
        records.append(dict(chunk=chunk, t_rel=t_rel, call=t_call, back=t_back, rec=rec))
        # wait replan_every steps of robot time (measure the read rate during the middle chunk)
        if k == args.chunks // 2 and busy_rate is None:
            busy_rate = read_rate(arm, min(0.3, 0.8 * args.replan_every * dt))
        target = t_rel + args.replan_every * dt
        while robot.state.time.to_sec() - t_ref0 < target:
            time.sleep(0.004)
    wait_t0 = time.monotonic()
    while not arm.motion_finished() and time.monotonic() - wait_t0 < 5.0:
        time.sleep(0.01)
    time.sleep(0.3)
    log.stop_evt.set()
    log.join()
    wall = time.monotonic() - wall0
    t_log, Q, QD, DQD = log.arrays()
    state = arm.read_state()
    arm.disconnect()
    if state.in_error:
        raise SystemExit(f"arm ended in error: {state.error_message}")

    # ---- figures
    starts = [r["rec"].started_robot_time for r in records]
    if any(s is None for s in starts):
        raise SystemExit("a motion never started (no first-cycle callback)")
    err_cmd, err_meas, per_index = [], [], {}
    for j, r in enumerate(records):
        due = starts[j] + r["chunk"].time_from_start
        ran = due < (starts[j + 1] if j + 1 < len(records) else np.inf)
        due = due[ran]
        due = due[(due >= t_log[0]) & (due <= t_log[-1])]
        targets = r["chunk"].positions[: len(due)]
        e_c = np.abs(interp(due, t_log, QD) - targets).max(axis=1)
        e_m = np.abs(interp(due, t_log, Q) - targets).max(axis=1)
        err_cmd.extend(e_c)
        err_meas.extend(e_m)
        for i, e in enumerate(e_c):
            per_index.setdefault(i, []).append(e)
    err_cmd, err_meas = np.array(err_cmd), np.array(err_meas)
    gaps = np.array([(r["rec"].started - r["call"]) * 1e3 for r in records[1:]])
    call_ms = np.array([(r["back"] - r["call"]) * 1e3 for r in records])
    ratios = []
    t_grid = np.linspace(0.0, t_log[-1] - t_ref0, 2000)
    peak_speed = np.linalg.norm(dq_ref(t_grid), axis=-1).max()
    for j in range(1, len(records)):
        sel = (t_log >= starts[j] - 0.05) & (t_log <= starts[j] + 0.05)
        if sel.sum() < 3:
            continue
        ref_speed = np.linalg.norm(dq_ref(starts[j] - t_ref0))
        if ref_speed < 0.3 * peak_speed:  # ratios near the reference's slow turning points say nothing
            continue
        ratios.append(np.linalg.norm(DQD[sel], axis=1).min() / max(ref_speed, 1e-9))
    ratios = np.array(ratios)
    rtf = (t_log[-1] - t_log[0]) / max(wall, 1e-9)

    peak_v = float(np.abs(amp * w).max())
    print(f"FR3 chunk tracking ({'franky-sim ' + ip if simulated else 'robot ' + ip}; franky-control 2.0.0)")
    print(f"  chunks: {len(records)} x {CHUNK_STEPS} steps at {ACTION_RATE_HZ:.0f} Hz, new chunk every "
          f"{args.replan_every} steps ({args.replan_every * dt * 1e3:.0f} ms); reference amplitude "
          f"{args.amplitude:.3f} rad x shape, {args.frequency:.2f} Hz (peak joint speed {peak_v:.2f} rad/s); "
          f"relative dynamics {args.dynamics:.2f}")
    print(f"  robot clock / wall clock: {rtf:.2f} (simulator speed)")
    print(f"  waypoints evaluated: {len(err_cmd)}")
    print(f"  tracking error, commanded q_d vs waypoint [rad]: mean {err_cmd.mean():.4f}  median "
          f"{pct(err_cmd, 50):.4f}  p95 {pct(err_cmd, 95):.4f}  max {err_cmd.max():.4f}")
    print(f"  tracking error, measured  q   vs waypoint [rad]: mean {err_meas.mean():.4f}  median "
          f"{pct(err_meas, 50):.4f}  p95 {pct(err_meas, 95):.4f}  max {err_meas.max():.4f}")
    first = [np.mean(per_index[i]) for i in sorted(per_index)[:4]]
    print("  commanded error by waypoint index 0..3 [rad]: " + "  ".join(f"{e:.4f}" for e in first))
    print(f"  preemption gap execute() -> first control cycle [ms]: median {pct(gaps, 50):.2f}  p95 "
          f"{pct(gaps, 95):.2f}  max {gaps.max():.2f}")
    print(f"  execute() call duration [ms]: median {pct(call_ms, 50):.2f}  max {call_ms.max():.2f}")
    if len(ratios):
        print(f"  commanded speed across hand-overs / reference speed: min {ratios.min():.2f}  median "
              f"{pct(ratios, 50):.2f}")
    print(f"  read_state() rate [Hz]: idle {idle_rate:.0f}  during motion {busy_rate or float('nan'):.0f}")
    print(f"  final: in_error={state.in_error}")


if __name__ == "__main__":
    main()
