"""One rollout: checkpoint ready, graph up, wait until it is ready, policy start, run, stop; stop signals and dead
node processes end it early with a hold first. Returns the report dict (``jala_bringup.report``)."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .graph import GraphArgs, build_graph, load_task_config
from .monitor import Monitor
from .processes import GraphProcesses, Process, python_path
from .report import fill_report
from .ros_env import apply_loopback_env, loopback_env

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
        if not is_recording(args):  # a policy runs: a checkpoint is needed (a tiny demo one when none is given)
            args.checkpoint = ensure_checkpoint(args.checkpoint, len(cfg["cameras"]), workdir, env, args.sim)
        specs = build_graph(args)
        ready_service = "/jala/recorder/start" if is_recording(args) else "/jala/policy/start"
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
                    and len(m.hand_state_times) > 10 and monitor.service_ready(ready_service)):
                ready = True
                break
            signals.sleep(0.1)
        if not ready:
            raise TimeoutError(f"graph not ready after {startup_timeout:.0f} s: camera frames "
                               f"{ {k: len(v) for k, v in m.camera_stamps.items()} }, arm states "
                               f"{len(m.arm_state_times)}, hand states {len(m.hand_state_times)}, {ready_service} "
                               f"ready {monitor.service_ready(ready_service)}")
        report["startup_s"] = time.monotonic() - t_run
        recorder = next((s for s in specs if s.role == "recorder"), None)
        monitor.recording = True
        t0 = time.monotonic()
        if m.completion:  # simulation: the world's slip behind the wall clock so far (start-up included)
            report["realtime_slip_at_start_s"] = float(m.completion.get("realtime_slip_s", 0.0))
        if recorder is not None:  # recording demonstrations: the operator drives, the policy stays stopped
            report["recording"] = _record(monitor, procs, recorder, duration, signals, log)
        else:
            log(f"[run] graph ready in {report['startup_s']:.1f} s; starting the policy for {duration:.0f} s")
            ok, msg = monitor.call_trigger("/jala/policy/start")
            if not ok:
                raise RuntimeError(f"policy start failed: {msg}")
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
        if not is_recording(args):
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
            fill_report(report, monitor, args, t0, t1, t_run)
            monitor.close()
        if procs is not None:
            stuck = procs.stop()
            if stuck:
                report["stop_warnings"] = stuck  # printed with the report
        rclpy.try_shutdown()
    return report


def is_recording(args: GraphArgs) -> bool:
    """The graph records demonstrations (an operator drives; no policy): ``--record N`` / ``--dataset DIR``."""
    from .arguments import given_parameters

    rec = given_parameters(args, "recorder")
    return bool(rec.get("episodes") or rec.get("dataset"))


def _record(monitor: "Monitor", procs: "GraphProcesses", recorder, duration: float, signals: StopSignals,
            log) -> dict:
    """Wait while the operator records: until the recorder has saved ``episodes`` episodes in this run (or, with
    no target, for ``duration`` s); the status line is printed as it changes. Returns the last status."""
    import json

    from jala_ros.conversions import LATCHED_QOS
    from std_msgs.msg import String

    target = int(recorder.parameters.get("episodes", 0) or 0)
    status: dict = {}

    def on_status(msg):
        try:
            status.update(json.loads(msg.data))
        except ValueError:
            pass

    monitor.node.create_subscription(String, "/jala/recorder/status", on_status, LATCHED_QOS)
    limit = duration if not target else max(duration, 180.0 * target)
    log(f"[run] recording into {recorder.parameters['dataset']}: "
        + (f"{target} episode(s)" if target else f"for {duration:.0f} s") + " (the operator drives)")
    t0, last = time.monotonic(), ""
    while time.monotonic() - t0 < limit:
        dead = procs.dead()
        if dead:
            raise RuntimeError(_dead_process_error(procs, dead[0], "while recording"))
        line = status.get("line", "")
        if line and line != last:
            log(f"[rec] {line}")
            last = line
        if target and status.get("saved_this_run", 0) >= target:
            break
        signals.sleep(0.2)
    else:
        if target:
            raise TimeoutError(f"recorded {status.get('saved_this_run', 0)} of {target} episode(s) in {limit:.0f} s")
    return status


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
