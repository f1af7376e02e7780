"""Teleop command latency: from an operator input sample (its capture stamp) to the arm command.

Two measurements, with a synthetic hand-tracking source that streams a moving wrist pose at ``--input-hz``
(60 Hz: a Vision Pro / WebXR stream) and stamps each sample when it is made:

1. ``session``: sample -> ``TimedChunk`` produced by ``teleop.session.TeleopSession.step`` at the teleop rate (15
   Hz): IK, limits, chunk building, and the wait for the next teleop tick.
2. ``ros``: sample -> ``Arm.execute`` called on the simulated arm, through the teleop node, the chunk topic over
   DDS (loopback) and the arm node's follower, all in this process as in ``sim_devices``.

    python -m benchmarks.teleop_latency                 # 20 s each
    python -m benchmarks.teleop_latency --seconds 10 --json
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np

from benchmarks import use_ros_packages

use_ros_packages()


class MovingWrist:
    """An OperatorSource: a wrist pose circling 3 cm around a start pose, sampled at ``hz`` by its own thread."""

    name = "synthetic-hand-tracking"

    def __init__(self, start_pose: np.ndarray, hz: float = 60.0):
        from teleop.operator import OperatorSample

        self._make = OperatorSample
        self.start = np.asarray(start_pose, dtype=float)
        self.hz = hz
        self._latest = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0 / self.hz):
            t = time.monotonic()
            pose = self.start.copy()
            a = 2 * np.pi * 0.25 * (t - self._t0)
            pose[:3, 3] += 0.03 * np.array([np.cos(a) - 1.0, np.sin(a), 0.0])
            with self._lock:
                self._latest = self._make(stamp=t, wrist_pose=pose, hand_targets=np.full(6, 800.0), clutch=True)

    def read(self):
        with self._lock:
            s, self._latest = self._latest, None
        return s

    def close(self) -> None:
        self._stop.set()


def session_latency(seconds: float, input_hz: float) -> dict:
    from embodiment import READY_Q
    from teleop.arm_ik import ArmIK
    from teleop.session import TeleopSession

    ik = ArmIK()
    q = np.asarray(READY_Q, dtype=float)
    src = MovingWrist(ik.fk(q), input_hz)
    session = TeleopSession(src, ik=ik)
    lat, compute = [], []
    period = session.config.period
    t_end = time.monotonic() + seconds
    next_t = time.monotonic()
    while time.monotonic() < t_end:
        a = time.perf_counter()
        cmd = session.step(time.time(), q, np.full(6, 800.0))
        compute.append((time.perf_counter() - a) * 1e3)
        if cmd.chunk is not None and cmd.latency_s is not None:
            lat.append(cmd.latency_s * 1e3)
            q = cmd.chunk.positions[0, :7]  # the arm follows perfectly
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
    src.close()
    return {"commands": len(lat), "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p99": float(np.percentile(lat, 99)), "step_compute_ms_p50": float(np.percentile(compute, 50)),
            "step_compute_ms_p99": float(np.percentile(compute, 99))}


def ros_latency(seconds: float, input_hz: float, domain: int = 71) -> dict:
    import rclpy

    from hardware.sim import world as simworld
    from jala_bringup.ros_env import apply_loopback_env
    from jala_ros.node_utils import BackgroundSpin
    from jala_ros.sim_devices import build_sim_nodes
    from jala_ros.teleop_node import TeleopNode
    from teleop.arm_ik import ArmIK

    apply_loopback_env(domain)
    rclpy.init(domain_id=domain)
    world = simworld.SimWorld(simworld.SimWorldConfig(task="water_plant", render_width=64, render_height=48,
                                                      camera_fps=15.0))
    sim, cams, arm, hand = build_sim_nodes(overrides={"render_width": 64, "render_height": 48, "camera_fps": 15.0},
                                           world=world)
    executed: list[tuple[float, float]] = []  # (monotonic when Arm.execute was called, chunk stamp)
    real_execute = world.arm.execute

    def timed_execute(chunk, now):
        executed.append((time.monotonic(), chunk.stamp))
        return real_execute(chunk, now)

    world.arm.execute = timed_execute
    ik = ArmIK()
    src = MovingWrist(ik.fk(world.arm.read_state().q), input_hz)
    stamps: dict[float, float] = {}  # chunk stamp (ROS time) -> the input sample's stamp (monotonic)
    teleop = TeleopNode(src, overrides={"source": "keyboard"})
    real_step = teleop.session.step

    def step(now, q, h):
        cmd = real_step(now, q, h)
        if cmd.chunk is not None and cmd.latency_s is not None:
            stamps[cmd.chunk.stamp] = time.monotonic() - cmd.latency_s
        return cmd

    teleop.session.step = step
    spins = [BackgroundSpin([sim, *cams, arm, hand]), BackgroundSpin([teleop])]
    try:
        time.sleep(seconds)
    finally:
        src.close()
        for s in spins:
            s.close()
        teleop.destroy_node()
        for n in (*cams, arm, hand, sim):
            n.destroy_node()
        world.close()
        rclpy.try_shutdown()
    lat = [(t - stamps[st]) * 1e3 for t, st in executed if st in stamps]
    return {"commands": len(lat), "latency_ms_p50": float(np.percentile(lat, 50)) if lat else float("nan"),
            "latency_ms_p99": float(np.percentile(lat, 99)) if lat else float("nan"),
            "arm_holds": int(arm.held)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--input-hz", type=float, default=60.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out = {"session": session_latency(args.seconds, args.input_hz), "ros": ros_latency(args.seconds, args.input_hz)}
    if args.json:
        print(json.dumps(out, indent=2))
    s, r = out["session"], out["ros"]
    print(f"input sample -> TimedChunk (session, 15 Hz teleop tick): p50 {s['latency_ms_p50']:.1f} ms, p99 "
          f"{s['latency_ms_p99']:.1f} ms over {s['commands']} commands (step compute p50 "
          f"{s['step_compute_ms_p50']:.2f} ms, p99 {s['step_compute_ms_p99']:.2f} ms)")
    print(f"input sample -> Arm.execute (teleop node -> DDS -> arm node, simulated arm): p50 "
          f"{r['latency_ms_p50']:.1f} ms, p99 {r['latency_ms_p99']:.1f} ms over {r['commands']} commands")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
