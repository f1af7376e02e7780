"""Safety soak: the simulated water_plant graph (sim_devices, policy, supervisor as separate processes over
loopback DDS) runs the policy for ``--minutes``; every ~``--every`` seconds a random fault is injected, the hold
is checked, and the graph is reset and restarted.

    python -m benchmarks.soak                      # 10 minutes, a fault every ~20 s
    python -m benchmarks.soak --minutes 2 --every 15 --json

Faults: supervisor estop, a NaN chunk, a velocity-jump chunk, a chunk with a wrong joint name, a stalled device
process (SIGSTOP 2 s), a killed policy process, a killed device process (the killed one is restarted). Printed:
faults injected per kind, holds seen, max detection -> hold latency (arm / hand hold stamps against the
supervisor's detection stamp), motion during a hold (a chunk executed or an arm joint faster than 0.01 rad/s
from 0.5 s after the hold until the reset: must be 0), resets that recovered, and at the end the leaked node
processes and Fast DDS shared-memory files of dead processes (must be 0).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks import use_ros_packages

use_ros_packages()

from jala_bringup.graph import GraphArgs, build_graph  # noqa: E402
from jala_bringup.ros_env import apply_loopback_env, loopback_env  # noqa: E402
from jala_bringup.run import GraphProcesses, Monitor, ensure_checkpoint  # noqa: E402
from jala_bringup.shm_cleanup import stale_fastdds_segments  # noqa: E402

FAULTS = ("estop", "nan_chunk", "velocity_jump", "wrong_joint_name", "stall_devices", "kill_policy",
          "kill_devices")
STILL = 0.01  # rad/s


class Soak:
    def __init__(self, procs: GraphProcesses, mon: Monitor):
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        from jala_ros.conversions import CHUNK_QOS, STATE_QOS

        self.procs, self.mon = procs, mon
        self.arm: list[tuple[float, np.ndarray, np.ndarray]] = []
        mon.node.create_subscription(JointState, "/jala/arm/joint_states", lambda m: self.arm.append(
            (time.monotonic(), np.array(m.position), np.array(m.velocity))), STATE_QOS)
        self.chunk_pub = mon.node.create_publisher(JointTrajectory, "/jala/action_chunk", CHUNK_QOS)

    def wait(self, cond, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.01)
        return cond()

    def up(self) -> bool:
        t = time.monotonic()
        return (any(a > t - 0.5 for a, _, _ in self.arm) and self.mon.service_ready("/jala/policy/start")
                and self.mon.service_ready("/jala/supervisor/reset"))

    def diag(self, dev: str) -> dict:
        return getattr(self.mon.m, f"{dev}_diag")

    def held(self) -> bool:
        return self.diag("arm").get("held") == "True" and self.diag("hand").get("held") == "True"

    def executed(self) -> int:
        return int(self.diag("arm").get("chunks_executed", 0) or 0)

    def reset_and_start(self, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ok, _ = self.mon.call_trigger("/jala/supervisor/reset", timeout=3.0)
            if ok and self.wait(lambda: not self.held() and self.diag("arm").get("held") == "False", 3.0):
                ok, _ = self.mon.call_trigger("/jala/policy/start", timeout=3.0)
                n = self.executed()
                if ok and self.wait(lambda: self.executed() > n, 10.0):
                    return True
            time.sleep(0.5)
        return False

    def bad_chunk(self, kind: str) -> None:
        from jala_ros.conversions import trajectory_msg
        from embodiment import ACTION_DT, ACTION_HORIZON, CHUNK_JOINT_NAMES

        q = self.arm[-1][1]
        now = self.mon.node.get_clock().now().nanoseconds * 1e-9
        n = ACTION_HORIZON
        actions = np.hstack([q[None].repeat(n, 0), np.full((n, 6), 800.0)])
        names = list(CHUNK_JOINT_NAMES)
        if kind == "nan_chunk":
            actions[5, 2] = np.nan
        elif kind == "velocity_jump":
            actions[:, 0] += 0.6
        else:
            names[3] = "fr3_joint_4"
        self.chunk_pub.publish(trajectory_msg(actions, now + ACTION_DT * np.arange(1, n + 1), now, names))

    def inject(self, kind: str) -> None:
        if kind == "estop":
            self.mon.call_trigger("/jala/supervisor/estop")
        elif kind in ("nan_chunk", "velocity_jump", "wrong_joint_name"):
            self.bad_chunk(kind)
        elif kind == "stall_devices":
            pid = self.procs.process("sim_devices").popen.pid
            os.kill(pid, signal.SIGSTOP)
            time.sleep(2.0)
            os.kill(pid, signal.SIGCONT)
        elif kind == "kill_policy":
            self.procs.process("policy").popen.kill()
        elif kind == "kill_devices":
            self.procs.process("sim_devices").popen.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=20.0, help="mean seconds between faults")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domain-id", type=int, default=88)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import rclpy

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rng = random.Random(a.seed)
    shm_before = set(stale_fastdds_segments())
    workdir = Path(tempfile.mkdtemp(prefix="jala_soak_"))
    env = loopback_env(a.domain_id)
    ckpt = ensure_checkpoint(None, 1, workdir, env, sim=True)
    args = GraphArgs(task="water_plant", checkpoint=ckpt, device="cpu",
                     overrides={"sim_devices": {"render_width": 96, "render_height": 72, "camera_fps": 10.0}})
    procs = GraphProcesses(build_graph(args), env, workdir)
    procs.start()
    apply_loopback_env(a.domain_id)
    rclpy.init(domain_id=a.domain_id)
    mon = Monitor(["/camera/camera/color/camera_info"], name="soak_monitor")
    soak = Soak(procs, mon)
    injected: Counter = Counter()
    holds = 0
    latencies: list[float] = []
    motion_in_hold = 0
    resets_ok = resets = 0
    missed: list[str] = []
    unexpected: list[str] = []  # holds that came without an injected fault
    failed_resets: list[str] = []
    pids: set[int] = set()
    try:
        if not soak.wait(soak.up, 180.0) or not soak.reset_and_start():
            raise SystemExit("soak: the graph did not come up")
        end = time.monotonic() + a.minutes * 60.0
        while time.monotonic() < end:
            time.sleep(max(2.0, rng.uniform(0.5, 1.5) * a.every - 8.0))  # rollout between faults
            if mon.m.status and mon.m.status[-1][1].startswith("HOLD"):  # not injected: e.g. a starved camera
                unexpected.append(mon.m.status[-1][1])
                soak.reset_and_start()
            kind = rng.choice(FAULTS)
            pids |= {p.popen.pid for p in procs.procs}
            det_before = float(mon.m.supervisor_diag.get("detected_at", "0") or 0)
            n_status = len(mon.m.status)
            soak.inject(kind)
            injected[kind] += 1
            if not soak.wait(lambda: any(s.startswith("HOLD") for _, s in mon.m.status[n_status:]), 10.0):
                missed.append(f"{kind} (status {mon.m.status[-1][1] if mon.m.status else '-'})")
                soak.reset_and_start()
                continue
            holds += 1
            t_hold = time.monotonic()
            if kind not in ("kill_devices",) and soak.wait(
                    lambda: soak.held() and float(mon.m.supervisor_diag.get("detected_at", "0") or 0) > det_before,
                    5.0):
                det = float(mon.m.supervisor_diag["detected_at"])
                stamps = [float(soak.diag(d).get("hold_stamp", "nan")) for d in ("arm", "hand")]
                # a device stalled with its process holds on resume, later than the supervisor's detection
                if kind != "stall_devices":
                    latencies.append(max(stamps) - det)
            executed = soak.executed()
            time.sleep(max(0.0, t_hold + 0.5 - time.monotonic()))
            t_still = time.monotonic()
            time.sleep(1.0)
            speeds = [np.abs(v).max() for t, _, v in soak.arm if t > t_still]
            if (speeds and max(speeds) >= STILL) or soak.executed() > executed:
                motion_in_hold += 1
            if kind == "kill_policy":
                procs.restart("policy")
            elif kind == "kill_devices":
                procs.restart("sim_devices")
            soak.wait(soak.up, 120.0)
            resets += 1
            if soak.reset_and_start():
                resets_ok += 1
            else:
                failed_resets.append(f"after {kind} (status {mon.m.status[-1][1] if mon.m.status else '-'})")
    finally:
        mon.close()
        pids |= {p.popen.pid for p in procs.procs}
        procs.stop()
        rclpy.try_shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    time.sleep(1.0)
    leaked = [p for p in pids if Path(f"/proc/{p}").exists()
              and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    shm_leaked = sorted(set(stale_fastdds_segments()) - shm_before)
    report = {"minutes": a.minutes, "faults_injected": sum(injected.values()), "by_kind": dict(injected),
              "holds": holds, "faults_without_hold": missed, "holds_without_fault": unexpected,
              "max_hold_latency_ms": round(max(latencies) * 1e3, 1) if latencies else None,
              "motion_during_hold": motion_in_hold, "resets": resets, "resets_ok": resets_ok, "failed_resets": failed_resets,
              "leaked_processes": len(leaked), "leaked_shm_files": len(shm_leaked)}
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"soak {a.minutes:.1f} min: {report['faults_injected']} faults injected {dict(injected)}")
        print(f"  holds {holds} (faults without a hold: {missed or 'none'}; holds without an injected fault: "
              f"{unexpected or 'none'}); max detection -> hold "
              f"{report['max_hold_latency_ms']} ms; motion during hold: {motion_in_hold}")
        print(f"  resets recovered {resets_ok} of {resets} (failed: {failed_resets or 'none'}); leaked processes {len(leaked)}, leaked shared-memory "
              f"files {len(shm_leaked)}")
    ok = not missed and motion_in_hold == 0 and resets_ok == resets and not leaked and not shm_leaked
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
