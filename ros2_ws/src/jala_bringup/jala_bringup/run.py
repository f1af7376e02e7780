"""Project runner: bring up a task's node graph without ``ros2 launch``, run one policy rollout, report.

    python launch/run_task.py water_plant --sim --duration 20
    python -m jala_bringup.run water_plant --sim --duration 20 --json

Builds the node specs with ``jala_bringup.graph`` (the launch files use the same), writes one params file per
process, starts each as ``python -m jala_ros.<executable> --ros-args ...`` with the loopback DDS environment
(``jala_bringup.ros_env``), waits until frames, joint states and the policy are up, calls
``/jala/policy/start``, runs for ``--duration`` seconds, stops the policy and prints: camera rate, joint-state
rates, camera-frame-to-chunk latency p50/p99 (frame stamp -> chunk received here), chunks executed by arm and
hand, every hold with its reason and time, and (simulation) the final Completion Ratio. Without
``--checkpoint`` a tiny random demo checkpoint (``jala_policy.demo_checkpoint``) is written to the run directory.

Faults: SIGINT (Ctrl-C) or SIGTERM stops the rollout at once: the runner asks for a hold (supervisor, and the
arm and hand directly on ``/jala/hold``), stops the policy, prints the report so far and exits (130 / 143).
A node process that dies ends the rollout the same way, the hold first, its reason in the report. The node
processes die with the runner, even when it is SIGKILLed (PR_SET_PDEATHSIG, and each node also watches its
parent). At start, Fast DDS shared-memory files left by killed processes are removed (``shm_cleanup``); the
run's temporary work folder is removed at exit (``--workdir DIR`` keeps params files and logs in DIR).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .graph import TASKS, GraphArgs, NodeSpec, build_graph, command_line, load_task_config, params_file_content
from .ros_env import apply_loopback_env, loopback_env

SRC_DIR = Path(__file__).resolve().parents[2]  # ros2_ws/src when run from the sources
REPO_DIR = SRC_DIR.parents[1]


def python_path(env: dict[str, str]) -> str:
    """PYTHONPATH for the node processes: the package sources (when not pip-installed) and the repo root."""
    parts = [str(SRC_DIR / "jala_ros"), str(SRC_DIR / "jala_bringup"), str(REPO_DIR)]
    parts = [p for p in parts if Path(p).exists()]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    return os.pathsep.join(parts)


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """In a child before exec: the kernel sends it ``sig`` when the runner's thread that started it dies
    (Linux PR_SET_PDEATHSIG), so a SIGKILLed runner leaves no node publishing chunks."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:  # the runner died before prctl took effect
        os._exit(1)


@dataclass
class Process:
    spec: NodeSpec
    cmd: list[str]
    popen: subprocess.Popen
    log: Path


class GraphProcesses:
    """Starts and stops the node processes of a graph."""

    def __init__(self, specs: list[NodeSpec], env: dict[str, str], workdir: Path, python: str = sys.executable):
        self.specs = specs
        self.env = dict(env)
        self.env["PYTHONPATH"] = python_path(env)
        self.env.setdefault("OMP_NUM_THREADS", "1")
        self.env["PYTHONUNBUFFERED"] = "1"
        self.workdir = Path(workdir)
        self.python = python
        self.procs: list[Process] = []

    def commands(self) -> list[tuple[NodeSpec, list[str], Path]]:
        out = []
        for spec in self.specs:
            pfile = self.workdir / f"{spec.role}_{spec.name or spec.executable}.params.yaml"
            out.append((spec, command_line(spec, str(pfile), self.python), pfile))
        return out

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for spec, cmd, pfile in self.commands():
            pfile.write_text(yaml.safe_dump(params_file_content(spec), sort_keys=False))
            self.procs.append(self._launch(spec, cmd))

    def _launch(self, spec: NodeSpec, cmd: list[str]) -> Process:
        log = self.workdir / f"{spec.role}_{spec.name or spec.executable}.log"
        with open(log, "ab") as fh:
            # own session (a terminal's Ctrl-C reaches the runner only, which stops the nodes in order), but
            # never outliving the runner
            popen = subprocess.Popen(cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=functools.partial(die_with_parent, os.getpid()))
        return Process(spec, cmd, popen, log)

    def restart(self, role: str) -> Process:
        """Start the process of ``role`` again (after it died or was killed); returns the new one."""
        i, old = next((i, p) for i, p in enumerate(self.procs) if p.spec.role == role)
        if old.popen.poll() is None:
            old.popen.kill()
            old.popen.wait()
        self.procs[i] = self._launch(old.spec, old.cmd)
        return self.procs[i]

    def process(self, role: str) -> Process:
        return next(p for p in self.procs if p.spec.role == role)

    def dead(self) -> list[Process]:
        return [p for p in self.procs if p.popen.poll() is not None]

    def tail(self, proc: Process, n: int = 25) -> str:
        try:
            return "\n".join(proc.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 8.0) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGINT)
        end = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.popen.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.terminate()
                try:
                    p.popen.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    p.popen.kill()
                    p.popen.wait()


# ------------------------------------------------------------------------------------------------ monitor
@dataclass
class Metrics:
    camera_stamps: dict[str, list[float]] = field(default_factory=dict)  # arrival times (monotonic)
    arm_state_times: list[float] = field(default_factory=list)
    hand_state_times: list[float] = field(default_factory=list)
    chunk_latency: list[float] = field(default_factory=list)  # frame stamp -> chunk received [s]
    chunks_received: int = 0
    arm_diag: dict[str, str] = field(default_factory=dict)
    hand_diag: dict[str, str] = field(default_factory=dict)
    supervisor_diag: dict[str, str] = field(default_factory=dict)
    policy_diag: dict[str, str] = field(default_factory=dict)
    status: list[tuple[float, str]] = field(default_factory=list)  # (monotonic arrival, text), every change
    diag_times: dict[str, float] = field(default_factory=dict)  # status name -> last arrival (monotonic)
    completion: dict | None = None
    arm_q: list = field(default_factory=list)  # (t, q) samples while running
    # (arrival time, states_published) from the arm / hand diagnostics: the publish rate at the source
    arm_published: list = field(default_factory=list)
    hand_published: list = field(default_factory=list)


class Monitor:
    """An rclpy node (in this process) watching the graph's topics. Call ``rclpy.init`` first."""

    def __init__(self, info_topics: list[str], name: str = "jala_run_monitor"):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CameraInfo, JointState
        from std_msgs.msg import Bool, String
        from trajectory_msgs.msg import JointTrajectory

        from jala_ros.conversions import CHUNK_QOS, IMAGE_SUB_QOS, LATCHED_QOS, STATE_QOS, from_time_msg
        from jala_ros.node_utils import (ARM_STATE_TOPIC, CHUNK_TOPIC, HAND_STATE_TOPIC, HOLD_REQUEST_TOPIC, HOLD_TOPIC,
                                         STATUS_TOPIC, BackgroundSpin, values_of)

        self.rclpy = rclpy
        self.m = Metrics()
        self.recording = False
        self._lock = threading.Lock()
        self.node = rclpy.create_node(name)
        node = self.node

        def clock() -> float:
            return node.get_clock().now().nanoseconds * 1e-9

        for t in info_topics:
            self.m.camera_stamps[t] = []
            node.create_subscription(CameraInfo, t, lambda _m, t=t: self.m.camera_stamps[t].append(time.monotonic()),
                                     IMAGE_SUB_QOS)

        def on_arm(msg):
            now = time.monotonic()
            self.m.arm_state_times.append(now)
            if self.recording:
                self.m.arm_q.append((now, list(msg.position)))

        node.create_subscription(JointState, ARM_STATE_TOPIC, on_arm, STATE_QOS)
        node.create_subscription(JointState, HAND_STATE_TOPIC, lambda _m: self.m.hand_state_times.append(
            time.monotonic()), STATE_QOS)

        def on_chunk(msg):
            self.m.chunks_received += 1
            if self.recording:
                self.m.chunk_latency.append(clock() - from_time_msg(msg.header.stamp))

        node.create_subscription(JointTrajectory, CHUNK_TOPIC, on_chunk, CHUNK_QOS)

        def on_diag(msg):
            for st in msg.status:
                self.m.diag_times[st.name] = time.monotonic()
                if st.name in ("jala/arm", "jala/hand"):
                    values = values_of(st) | {"message": st.message}
                    dev = st.name.split("/")[1]
                    setattr(self.m, f"{dev}_diag", values)
                    if "states_published" in values:
                        getattr(self.m, f"{dev}_published").append((time.monotonic(), int(values["states_published"])))
                elif st.name == "jala/policy":
                    self.m.policy_diag = values_of(st) | {"message": st.message}
                elif st.name == "jala/supervisor":
                    self.m.supervisor_diag = values_of(st) | {"message": st.message}

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)

        def on_status(msg):
            if not self.m.status or self.m.status[-1][1] != msg.data:
                self.m.status.append((time.monotonic(), msg.data))

        node.create_subscription(String, STATUS_TOPIC, on_status, LATCHED_QOS)
        self._hold_request_pub = node.create_publisher(String, HOLD_REQUEST_TOPIC, 10)
        self._hold_pub = node.create_publisher(Bool, HOLD_TOPIC, LATCHED_QOS)
        self._String, self._Bool = String, Bool
        node.create_subscription(String, "/jala/sim/completion",
                                 lambda msg: setattr(self.m, "completion", json.loads(msg.data)), LATCHED_QOS)
        self._spin = BackgroundSpin([node], name=name)

    def call_trigger(self, service: str, timeout: float = 5.0) -> tuple[bool, str]:
        from std_srvs.srv import Trigger

        from jala_ros.node_utils import call_trigger

        client = self.node.create_client(Trigger, service)
        try:
            return call_trigger(client, timeout)
        finally:
            self.node.destroy_client(client)

    def request_hold(self, reason: str) -> None:
        """Hold the robot: the supervisor with ``reason`` (on /jala/status and in its diagnostics), and the arm
        and hand directly on /jala/hold (they act on it even when the supervisor is gone)."""
        self._hold_request_pub.publish(self._String(data=reason))
        self._hold_pub.publish(self._Bool(data=True))

    def devices_held(self) -> bool:
        return self.m.arm_diag.get("held") == "True" and self.m.hand_diag.get("held") == "True"

    def service_ready(self, service: str) -> bool:
        names = {n for n, _ in self.node.get_service_names_and_types()}
        return service in names

    def close(self) -> None:
        self._spin.close()
        self.node.destroy_node()


def published_rate(samples: list[tuple[float, int]], t0: float, t1: float) -> float:
    """Messages per second between the first and the last (time, count) sample inside [t0, t1]."""
    inside = [(t, n) for t, n in samples if t0 <= t <= t1]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return float("nan")
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def rate_stats(times: list[float], t0: float, t1: float) -> dict:
    ts = np.array([t for t in times if t0 <= t <= t1])
    if ts.size < 2:
        return {"hz": 0.0, "n": int(ts.size), "period_p50_ms": float("nan"), "period_p99_ms": float("nan")}
    dt = np.diff(ts)
    return {"hz": float((ts.size - 1) / (ts[-1] - ts[0])), "n": int(ts.size),
            "period_p50_ms": float(np.percentile(dt, 50) * 1e3), "period_p99_ms": float(np.percentile(dt, 99) * 1e3)}


# ------------------------------------------------------------------------------------------------ rollout
def ensure_checkpoint(path: str | None, views: int, workdir: Path, env: dict[str, str], sim: bool = True) -> str:
    """``path``, or a tiny random demo checkpoint written to ``workdir`` (centred on the simulated world's start
    posture in simulation, on the FR3 home pose otherwise)."""
    if path:
        if not Path(path).exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        return path
    centre = "sim_ready" if sim else "home"
    out = workdir / f"demo_checkpoint_{views}view_{centre}"
    if not (out / "config.json").exists():
        e = dict(env)
        e["PYTHONPATH"] = python_path(env)
        r = subprocess.run([sys.executable, "-m", "jala_policy.demo_checkpoint", "--out", str(out), "--views",
                            str(views), "--centre", centre], env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
        if r.returncode:
            raise RuntimeError(f"writing the demo checkpoint failed:\n{r.stderr[-2000:]}")
    return str(out)


class Interrupted(Exception):
    """SIGINT / SIGTERM reached the runner."""


class StopSignals:
    """SIGINT and SIGTERM set ``received`` (the signal's name) instead of killing the runner mid-way; the rollout
    checks it between steps and winds down in order: hold, policy stop, report, node processes stopped."""

    def __init__(self):
        self.received = ""
        self._event = threading.Event()
        self._previous = {}

    def install(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, _frame) -> None:
        self.received = self.received or signal.Signals(signum).name
        self._event.set()

    def sleep(self, seconds: float) -> None:
        """Sleep, but raise Interrupted as soon as a stop signal has come."""
        if self._event.wait(seconds) or self.received:
            raise Interrupted(self.received)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _dead_process_error(procs: "GraphProcesses", p: "Process", when: str) -> str:
    return f"{p.spec.role} process exited with code {p.popen.returncode} {when}:\n{procs.tail(p, 8)}"


def run_rollout(args: GraphArgs, duration: float, domain_id: int, workdir: Path, startup_timeout: float = 180.0,
                log=print, estop_at_end: bool = False, signals: StopSignals | None = None) -> dict:
    """Bring the graph up, run the policy for ``duration`` s, bring it down; returns the report dict.
    ``estop_at_end``: while the policy still runs, call the supervisor's estop and report the time from its
    detection stamp to the arm's and hand's hold stamps (``estop_hold_latency_ms``). ``signals``: stop early
    (hold first) when one of its signals arrives; the report then has ``interrupted`` = the signal's name."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from .shm_cleanup import remove_stale_fastdds_segments

    signals = signals or StopSignals()
    cfg = load_task_config(args.task)
    env = loopback_env(domain_id)
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict = {"task": args.task, "mode": "sim" if args.sim else "real", "duration_s": duration,
                    "domain_id": domain_id, "workdir": str(workdir), "errors": []}
    removed = remove_stale_fastdds_segments()
    if removed:
        log(f"[run] removed {len(removed)} Fast DDS shared-memory file(s) left by dead processes")
    procs: GraphProcesses | None = None
    monitor: Monitor | None = None
    t_run = time.monotonic()
    t0 = t1 = None
    try:
        args.checkpoint = ensure_checkpoint(args.checkpoint, len(cfg["cameras"]), workdir, env, args.sim)
        specs = build_graph(args)
        info_topics = next(s.parameters["camera_info_topics"] for s in specs if s.role == "supervisor")
        procs = GraphProcesses(specs, env, workdir)
        apply_loopback_env(domain_id)
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # SIGINT/SIGTERM are ours (StopSignals)
        procs.start()
        log(f"[run] started {len(procs.procs)} processes (ROS_DOMAIN_ID={domain_id})")
        monitor = Monitor(info_topics)
        m = monitor.m
        ready = False
        while time.monotonic() - t_run < startup_timeout:
            dead = procs.dead()
            if dead:
                raise RuntimeError(_dead_process_error(procs, dead[0], "during start-up"))
            if (all(len(v) > 3 for v in m.camera_stamps.values()) and len(m.arm_state_times) > 10
                    and len(m.hand_state_times) > 10 and monitor.service_ready("/jala/policy/start")):
                ready = True
                break
            signals.sleep(0.1)
        if not ready:
            raise TimeoutError(f"graph not ready after {startup_timeout:.0f} s: camera frames "
                               f"{ {k: len(v) for k, v in m.camera_stamps.items()} }, arm states "
                               f"{len(m.arm_state_times)}, hand states {len(m.hand_state_times)}, policy ready "
                               f"{monitor.service_ready('/jala/policy/start')}")
        report["startup_s"] = time.monotonic() - t_run
        log(f"[run] graph ready in {report['startup_s']:.1f} s; starting the policy for {duration:.0f} s")
        monitor.recording = True
        ok, msg = monitor.call_trigger("/jala/policy/start")
        if not ok:
            raise RuntimeError(f"policy start failed: {msg}")
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration:
            dead = procs.dead()
            if dead:
                raise RuntimeError(_dead_process_error(procs, dead[0], "during the rollout"))
            signals.sleep(0.1)
        t1 = time.monotonic()
        if estop_at_end:
            monitor.call_trigger("/jala/supervisor/estop")
            end = time.monotonic() + 3.0
            while time.monotonic() < end and not (monitor.devices_held()
                                                  and m.supervisor_diag.get("holding") == "True"):
                time.sleep(0.01)
            det = float(m.supervisor_diag.get("detected_at", "nan"))
            report["estop_hold_latency_ms"] = {
                dev: (float(d.get("hold_stamp", "nan")) - det) * 1e3 for dev, d in (("arm", m.arm_diag),
                                                                                      ("hand", m.hand_diag))}
        monitor.call_trigger("/jala/policy/stop")
        monitor.recording = False
        time.sleep(0.6)  # last diagnostics / completion
    except Interrupted as exc:
        report["interrupted"] = str(exc)
        report["errors"].append(f"interrupted by {exc}: robot held, policy stopped")
        _hold_for_exit(monitor, procs, f"runner received {exc}", log)
    except Exception as exc:  # noqa: BLE001 - reported
        report["errors"].append(f"{type(exc).__name__}: {exc}")
        _hold_for_exit(monitor, procs, f"runner: {str(exc).splitlines()[0]}", log)
    finally:
        t1 = t1 or time.monotonic()
        if monitor is not None:
            _fill_report(report, monitor, args, t0, t1, t_run)
            monitor.close()
        if procs is not None:
            procs.stop()
        rclpy.try_shutdown()
    return report


def _hold_for_exit(monitor: "Monitor | None", procs: "GraphProcesses | None", reason: str, log) -> None:
    """Before anything else on a fault or a stop signal: hold the devices that are still alive, stop the
    policy, and wait (at most 2 s) until arm and hand report the hold."""
    if monitor is None or procs is None or not procs.procs:
        return
    log(f"[run] HOLD: {reason}")
    monitor.recording = False
    monitor.request_hold(reason)
    alive_devices = any(p.popen.poll() is None for p in procs.procs if p.spec.role in ("sim_devices", "arm", "hand"))
    end = time.monotonic() + 2.0
    while alive_devices and time.monotonic() < end and not monitor.devices_held():
        time.sleep(0.02)
    if any(p.popen.poll() is None for p in procs.procs if p.spec.role == "policy"):
        monitor.call_trigger("/jala/policy/stop", timeout=1.0)
    time.sleep(0.6)  # the hold's diagnostics and status reach the report


def _fill_report(report: dict, monitor: "Monitor", args: GraphArgs, t0: float | None, t1: float,
                 t_run: float) -> None:
    """The report's figures from what the monitor saw (so far, when the rollout ended early)."""
    m = monitor.m
    if args.sim:
        ok, msg = monitor.call_trigger("/jala/sim/completion", timeout=1.0)
        if ok:
            m.completion = json.loads(msg)
    holds = [{"t_s": round(t - t_run, 3), "reason": text[len("HOLD: "):]} for t, text in m.status
             if text.startswith("HOLD")]
    report["holds"] = holds
    report["status_history"] = [{"t_s": round(t - t_run, 3), "status": text} for t, text in m.status]
    report["hold_reasons"] = {dev: d.get("hold_reason", "") for dev, d in (("arm", m.arm_diag), ("hand", m.hand_diag))
                              if d.get("held") == "True"}
    if t0 is None:  # never started
        return
    report.update({
        "cameras": {t: rate_stats(v, t0, t1) for t, v in m.camera_stamps.items()},
        "arm_joint_states": rate_stats(m.arm_state_times, t0, t1)
        | {"published_hz": published_rate(m.arm_published, t0, t1)},
        "hand_joint_states": rate_stats(m.hand_state_times, t0, t1)
        | {"published_hz": published_rate(m.hand_published, t0, t1)},
        "chunks_received": len(m.chunk_latency),
        "latency_ms": {f"p{p}": float(np.percentile(m.chunk_latency, p) * 1e3) if m.chunk_latency
                       else float("nan") for p in (50, 99)},
        "policy_inference_ms": {p: float(m.policy_diag.get(f"inference_{p}_ms", "nan")) for p in ("p50", "p99")},
        "arm": {k: m.arm_diag.get(k) for k in ("chunks_executed", "chunks_refused", "waypoints_dropped",
                                                "held", "message")},
        "hand": {k: m.hand_diag.get(k) for k in ("chunks_executed", "chunks_refused", "commands_sent", "held",
                                                 "message")},
        "holds_during_rollout": sum(1 for h in holds if h["t_s"] <= t1 - t_run),  # the estop at the end comes after t1
        "completion": m.completion,
    })
    if m.arm_q:
        q = np.array([s[1] for s in m.arm_q])
        report["arm_motion_rad"] = float(np.abs(q - q[0]).max())


def format_report(r: dict) -> str:
    lines = [f"JALA {r['task']} ({r['mode']}), {r['duration_s']:.0f} s rollout"
             + (f" (interrupted by {r['interrupted']})" if r.get("interrupted") else "")]
    if "cameras" in r:
        for t, s in r["cameras"].items():
            lines.append(f"  camera {t}: {s['hz']:.1f} Hz")
        for key, label in (("arm_joint_states", "arm joint states"), ("hand_joint_states", "hand joint states")):
            s = r[key]
            lines.append(f"  {label}: published {s.get('published_hz', float('nan')):.1f} Hz by the node; received "
                         f"here {s['hz']:.1f} Hz (period p50 {s['period_p50_ms']:.1f} ms, "
                         f"p99 {s['period_p99_ms']:.1f} ms)")
        lat = r["latency_ms"]
        lines.append(f"  camera-frame-to-chunk latency: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms "
                     f"({r['chunks_received']} chunks; inference alone p50 {r['policy_inference_ms']['p50']:.1f} ms, "
                     f"p99 {r['policy_inference_ms']['p99']:.1f} ms)")
        lines.append(f"  chunks executed: arm {r['arm'].get('chunks_executed')}, "
                     f"hand {r['hand'].get('chunks_executed')}"
                     f" (refused: arm {r['arm'].get('chunks_refused')}, hand {r['hand'].get('chunks_refused')}; "
                     f"past waypoints dropped {r['arm'].get('waypoints_dropped')})")
        if "estop_hold_latency_ms" in r:
            e = r["estop_hold_latency_ms"]
            lines.append(f"  estop -> hold: arm {e['arm']:.1f} ms, hand {e['hand']:.1f} ms after the supervisor's "
                         "detection")
        if "arm_motion_rad" in r:
            lines.append(f"  arm moved up to {r['arm_motion_rad']:.3f} rad from its start")
        lines.append(f"  holds during the rollout: {r['holds_during_rollout']}")
    for h in r.get("holds", []):
        lines.append(f"  HOLD at {h['t_s']:.2f} s: {h['reason']}")
    if r.get("hold_reasons"):
        lines.append("  devices held: " + "; ".join(f"{d} ({why})" for d, why in r["hold_reasons"].items()))
    c = r.get("completion")
    if c is not None:
        lines.append(f"  completion ratio: {c.get('ratio', float('nan')):.2f}  {json.dumps(c)}")
    for e in r["errors"]:
        lines.append(f"  ERROR: {e}")
    return "\n".join(lines)


def domain_id_arg(text: str) -> int:
    """argparse type for --domain-id: an int in ROS 2's safe range on Linux (0..101)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 101:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..101 (ROS 2's safe domain ids on Linux)")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose errors are one line (not the whole usage block): ``run_task: <error> (--help: usage)``."""

    def error(self, message: str):
        self.exit(2, f"run_task: {message} (--help: usage)\n")


def main(argv=None) -> int:
    ap = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task", choices=TASKS)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--sim", dest="sim", action="store_true", default=True, help="simulated world (default)")
    mode.add_argument("--real", dest="sim", action="store_false", help="the real robot")
    ap.add_argument("--duration", type=float, default=20.0, help="policy rollout length [s]")
    ap.add_argument("--checkpoint", default="", help="policy checkpoint dir (default: a tiny random demo one)")
    ap.add_argument("--device", default="", help="policy device: auto | cpu | cuda")
    ap.add_argument("--instruction", default="")
    ap.add_argument("--seed", type=int, default=None, help="simulated world seed")
    ap.add_argument("--variant", default="", help="simulated world variant")
    ap.add_argument("--robot-ip", default="")
    ap.add_argument("--hand-transport", default="tcp", choices=["tcp", "rtu"])
    ap.add_argument("--hand-host", default="127.0.0.1")
    ap.add_argument("--hand-port", type=int, default=6000)
    ap.add_argument("--hand-serial-port", default="/dev/ttyUSB0")
    ap.add_argument("--camera-serials", default="", help="comma-separated RealSense serials (real robot)")
    ap.add_argument("--domain-id", type=domain_id_arg, default=None, help="ROS_DOMAIN_ID 0..101 (default: random "
                                                                          "10..99)")
    ap.add_argument("--workdir", default="", help="keep params files, logs and the demo checkpoint in this folder "
                                                  "(default: a temporary folder, removed at exit)")
    ap.add_argument("--startup-timeout", type=float, default=180.0)
    ap.add_argument("--print-commands", action="store_true", help="print the node command lines and exit")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--estop-at-end", action="store_true",
                    help="end the rollout with the supervisor's estop and report detection -> hold latency")
    a = ap.parse_args(argv)
    try:
        gargs = GraphArgs(task=a.task, sim=a.sim, checkpoint=a.checkpoint, device=a.device,
                          instruction=a.instruction, seed=a.seed, variant=a.variant, robot_ip=a.robot_ip,
                          hand_transport=a.hand_transport, hand_host=a.hand_host, hand_port=a.hand_port,
                          hand_serial_port=a.hand_serial_port, camera_serials=a.camera_serials)
        if a.print_commands:
            gargs.checkpoint = gargs.checkpoint or "<checkpoint>"
            for spec, cmd, _ in GraphProcesses(build_graph(gargs), loopback_env(), Path("<workdir>")).commands():
                print(f"# {spec.role}: {json.dumps(spec.parameters)}\n{' '.join(cmd)}")
            return 0
        load_task_config(a.task)  # a broken config is an error before anything starts
        if a.checkpoint and not (Path(a.checkpoint).expanduser() / "config.json").is_file():
            raise FileNotFoundError(f"--checkpoint {a.checkpoint}: no JALA policy checkpoint there (config.json "
                                    "missing); python -m jala_policy.demo_checkpoint --out DIR makes a tiny one")
    except (ValueError, FileNotFoundError) as exc:  # ConfigError, UnknownParameterError, bad arguments
        print(f"run_task: {exc}", file=sys.stderr)
        return 2
    signals = StopSignals().install()
    workdir = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix=f"jala_{a.task}_"))
    try:
        domain = a.domain_id if a.domain_id is not None else random.randint(10, 99)
        report = run_rollout(gargs, a.duration, domain, workdir, a.startup_timeout, estop_at_end=a.estop_at_end,
                             signals=signals)
        print(json.dumps(report, indent=1) if a.json else format_report(report), flush=True)
    finally:
        if not a.workdir:
            shutil.rmtree(workdir, ignore_errors=True)  # our temp folder: params files, logs, demo checkpoint
        signals.restore()
    if report.get("interrupted"):
        return 128 + int(getattr(signal, report["interrupted"]))
    if report["errors"]:
        if a.workdir:
            print(f"[run] node logs: {workdir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
