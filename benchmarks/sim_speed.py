"""Simulated task world speed: simulated seconds per wall second, per task, with and without camera rendering.

    MUJOCO_GL=osmesa python -m benchmarks.sim_speed [--seconds 5] [--width 640 --height 480] [--fps 30]

"physics" steps the world (arm following a chunk, hand closing, detectors running) with no rendering;
"render" additionally renders every camera of the task at --fps simulated frames per second (the rate the
real-time mode would produce). Offscreen rendering uses MUJOCO_GL (osmesa on CPU, egl on a GPU).

``--contention N`` also runs the real-time physics thread's step loop next to N busy Python threads (what an
rclpy executor and state publishers are to it in the sim_devices process) and prints physics steps per wall
second for the old loop (one mj_step call per step) and the current one (one call per control tick), at the
interpreter's default GIL switch interval and at the one start_realtime() sets. Real time needs
1 / timestep = 500 steps/s.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

os.environ.setdefault("MUJOCO_GL", "osmesa")

import numpy as np  # noqa: E402

from embodiment import ACTION_DT, ARM_JOINT_NAMES, READY_Q  # noqa: E402
from hardware.sim import SimWorld, SimWorldConfig  # noqa: E402
from jala_runtime.chunk import TimedChunk  # noqa: E402


def run(task: str, seconds: float, render: bool, width: int, height: int, fps: float) -> tuple[float, float]:
    world = SimWorld(SimWorldConfig(task=task, seed=0, render_width=width, render_height=height, camera_fps=fps))
    try:
        ready = np.asarray(READY_Q)
        target = ready + np.array([0.3, 0.2, 0.0, 0.2, 0.0, -0.2, 0.3])
        t = ACTION_DT * np.arange(1, int(round(seconds / ACTION_DT)) + 1)  # waypoints at the action rate, like a chunk
        a = (t / t[-1])[:, None]
        now = world.sim_time
        world.arm.execute(TimedChunk.from_relative(now, t, (1 - a) * ready + a * target, ARM_JOINT_NAMES), now=now)
        world.hand.set_angles(np.full(6, 300.0))
        if render:  # warm up the GL context outside the timing
            for cam in world.cameras.values():
                cam.read()
        frame_dt = 1.0 / fps
        steps_per_frame = max(1, int(round(frame_dt / world.model.opt.timestep)))
        n_frames = int(seconds * fps)
        t0 = time.perf_counter()
        s0 = world.sim_time
        for _ in range(n_frames):
            world.step(steps_per_frame)
            if render:
                for cam in world.cameras.values():
                    cam.read()
        wall = time.perf_counter() - t0
        return (world.sim_time - s0) / wall, len(world.cameras) * n_frames / wall
    finally:
        world.close()


def contention(busy_threads: int, seconds: float = 1.0) -> list[tuple[str, float, float]]:
    """(loop, switch interval [s], physics steps per wall second) with ``busy_threads`` pure-Python threads."""
    import mujoco

    world = SimWorld(SimWorldConfig(task="water_plant", seed=0, render_width=64, render_height=48))
    stop = threading.Event()

    def busy():
        x = 0
        while not stop.is_set():
            x += 1

    def rate(call, steps_per_call: int) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            call()
            n += steps_per_call
        return n / (time.perf_counter() - t0)

    k = world.config.task_tick_steps
    loops = (("one mj_step per step", lambda: mujoco.mj_step(world.model, world.data), 1),
             (f"one mj_step per tick ({k} steps)", lambda: world._advance(k), k))
    saved = sys.getswitchinterval()
    threads = [threading.Thread(target=busy, daemon=True) for _ in range(busy_threads)]
    rows = []
    try:
        for t in threads:
            t.start()
        for interval in (saved, world.config.realtime_switch_interval_s):
            sys.setswitchinterval(interval)
            for name, call, steps in loops:
                rows.append((name, interval, rate(call, steps)))
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(saved)
        world.close()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="simulated seconds per measurement")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--fps", type=float, default=30.0, help="camera frames per simulated second when rendering")
    ap.add_argument("--tasks", nargs="*", default=["water_plant", "put_three_obj", "wipe_board"])
    ap.add_argument("--contention", type=int, default=0, metavar="N",
                    help="also measure the real-time step loop beside N busy Python threads")
    args = ap.parse_args(argv)
    print(f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}  render {args.width}x{args.height} @ {args.fps:g} fps (sim time)")
    print(f"{'task':15s} {'cams':>4s} {'physics only':>16s} {'with rendering':>16s} {'frames/s':>9s}")
    for task in args.tasks:
        phys, _ = run(task, args.seconds, False, args.width, args.height, args.fps)
        rend, fps = run(task, args.seconds, True, args.width, args.height, args.fps)
        ncam = 2 if task == "wipe_board" else 1
        print(f"{task:15s} {ncam:4d} {phys:11.1f} x RT {rend:11.2f} x RT {fps:9.1f}")
    if args.contention:
        print(f"\nphysics steps per wall second beside {args.contention} busy Python threads (real time: 500/s)")
        for name, interval, steps in contention(args.contention):
            print(f"  {name:30s} switch interval {interval * 1e3:4.1f} ms: {steps:7.0f} steps/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
