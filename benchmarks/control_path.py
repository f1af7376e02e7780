"""Control-path timing of the ROS 2 runtime on the simulated world: camera-frame-to-chunk latency and joint-state
rates, with every node in its own process over DDS (loopback), as ``launch/run_task.py`` runs them.

    python -m benchmarks.control_path                      # water_plant, 20 s, demo checkpoint, policy on auto
    python -m benchmarks.control_path --duration 30 --device cuda --render 640x480 --fps 30

Latency = ROS time a chunk is received by an observer node - the stamp of the camera frame it was computed from
(frame arrival on the host): it includes waiting for the policy's next inference slot (pipelining), the image
transport, inference and the chunk transport. Joint-state rates: published = the nodes' own count (diagnostics
``states_published``), received = message arrivals at the observer (period p50/p99). At the end, the
supervisor's estop is called while the policy runs, and the time from its detection stamp to the arm's / hand's
hold stamp is printed. The simulated cameras render on the CPU, so
camera rate and latency depend on the machine (and on its load).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks import use_ros_packages

use_ros_packages()

from jala_bringup.graph import TASKS, GraphArgs  # noqa: E402
from jala_bringup.run import run_rollout  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=TASKS, default="water_plant")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--device", default="", help="policy device (default: auto)")
    ap.add_argument("--checkpoint", default="", help="default: tiny random demo checkpoint")
    ap.add_argument("--render", default="", help="simulated camera size WxH (default: config, 256x192)")
    ap.add_argument("--fps", type=float, default=0.0, help="simulated camera rate (default: config, 15)")
    ap.add_argument("--execute-steps", type=int, default=0, help="actions per chunk before the next (default 8)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sim = {}
    if a.render:
        w, h = (int(v) for v in a.render.lower().split("x"))
        sim.update(render_width=w, render_height=h)
    if a.fps:
        sim["camera_fps"] = a.fps
    overrides = {"sim_devices": sim} if sim else {}
    if a.execute_steps:
        overrides["policy"] = {"execute_steps": a.execute_steps}
    args = GraphArgs(task=a.task, checkpoint=a.checkpoint, device=a.device, overrides=overrides)
    workdir = Path(tempfile.mkdtemp(prefix="jala_bench_"))
    r = run_rollout(args, a.duration, random.randint(10, 99), workdir, log=lambda *_: None, estop_at_end=True)
    if not r["errors"]:
        shutil.rmtree(workdir, ignore_errors=True)
    if a.json:
        print(json.dumps(r, indent=1))
        return 1 if r["errors"] else 0
    print(f"control path on {platform.node()} ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}), "
          f"{a.task} sim, {a.duration:.0f} s rollout, policy device {a.device or 'auto'}")
    if r["errors"]:
        print("ERRORS:", *r["errors"], sep="\n  ")
        return 1
    lat = r["latency_ms"]
    print(f"  camera-frame-to-chunk latency  p50 {lat['p50']:7.1f} ms   p99 {lat['p99']:7.1f} ms   "
          f"({r['chunks_received']} chunks)")
    inf = r["policy_inference_ms"]
    print(f"  of which policy inference      p50 {inf['p50']:7.1f} ms   p99 {inf['p99']:7.1f} ms")
    for key, label in (("arm_joint_states", "arm joint states"), ("hand_joint_states", "hand joint states")):
        s = r[key]
        print(f"  {label:<18} published {s.get('published_hz', float('nan')):6.1f} Hz   received "
              f"{s['hz']:6.1f} Hz   period p50 {s['period_p50_ms']:6.1f} ms   p99 {s['period_p99_ms']:6.1f} ms")
    for t, s in r["cameras"].items():
        print(f"  camera {t}: {s['hz']:.1f} Hz")
    print(f"  chunks executed: arm {r['arm'].get('chunks_executed')}, hand {r['hand'].get('chunks_executed')}; "
          f"holds during the rollout {r['holds_during_rollout']}")
    e = r.get("estop_hold_latency_ms", {})
    print(f"  estop at the end: supervisor detection -> hold  arm {e.get('arm', float('nan')):.1f} ms, "
          f"hand {e.get('hand', float('nan')):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
