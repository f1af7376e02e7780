"""Fault suite, part 3: the project runner (``launch/run_task.py``) under SIGTERM, SIGINT and SIGKILL, observed
over DDS from this process. SIGTERM / SIGINT: the robot is held first (the report names the signal as the hold's
reason), the arm then stands still, the report so far is printed, the runner exits within a few seconds with
128 + the signal's number, and no node process or shared-memory segment is left. SIGKILL: every node process
dies with the runner and removes its own shared memory."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.safety

pytest.importorskip("rclpy")
pytest.importorskip("hardware.sim.world")

from tests.helpers import ROOT, use_ros_packages  # noqa: E402

use_ros_packages()

from jala_bringup.graph import NodeSpec  # noqa: E402
from jala_bringup.ros_env import apply_loopback_env, loopback_env, open_file_targets  # noqa: E402
from jala_bringup.run import GraphProcesses, ensure_checkpoint, python_path  # noqa: E402
from jala_bringup.shm_cleanup import remove_stale_fastdds_segments, stale_fastdds_segments  # noqa: E402

DOMAIN = 63  # its own domain: no other test file uses it
EXIT_BUDGET_S = 8.0  # signal -> runner exited (hold, report, node processes stopped), on a loaded 2-core box
HOLD_SEEN_S = 1.5  # signal or dead node process -> the runner's HOLD line (it checks every 0.1 s; a loaded box)
STILL_AFTER_HOLD_S = 0.6  # the runner's HOLD line -> the arm reports zero velocity


def _children(pid: int) -> set[int]:
    """Every descendant process of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out.update(kids)
        todo.extend(kids)
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(p)
    return alive


@pytest.fixture(scope="module")
def observer(tmp_path_factory):
    import rclpy
    from sensor_msgs.msg import JointState

    from jala_ros.conversions import STATE_QOS
    from jala_ros.node_utils import BackgroundSpin

    ckpt = ensure_checkpoint(None, 1, tmp_path_factory.mktemp("runner_signals"), loopback_env(DOMAIN), sim=True)
    apply_loopback_env(DOMAIN)
    rclpy.init(domain_id=DOMAIN)
    node = rclpy.create_node("runner_signal_observer")
    arm: list[tuple[float, np.ndarray]] = []
    node.create_subscription(JointState, "/jala/arm/joint_states",
                             lambda m: arm.append((time.monotonic(), np.array(m.velocity))), STATE_QOS)
    spin = BackgroundSpin([node])
    try:
        yield ckpt, arm
    finally:
        spin.close()
        node.destroy_node()
        rclpy.try_shutdown()


def _start_runner(ckpt: str, workdir: Path | None = None) -> tuple[subprocess.Popen, list[str]]:
    env = loopback_env(DOMAIN)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch" / "run_task.py"), "water_plant", "--sim",
                             "--duration", "120", "--domain-id", str(DOMAIN), "--checkpoint", ckpt]
                            + (["--workdir", str(workdir)] if workdir else []),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    lines: list[str] = []
    end = time.monotonic() + 150
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "starting the policy" in line:
            time.sleep(3.0)  # the rollout is under way: chunks are being executed
            return proc, lines
    proc.kill()
    raise AssertionError("the runner did not start its rollout:\n" + "".join(lines))


def _read_until_exit(proc: subprocess.Popen, timeout: float) -> list[tuple[float, str]]:
    """The runner's remaining output, each line with the time it arrived (so a window can start at its HOLD
    line, not at the signal: on a loaded box the runner may see the fault a little later)."""
    timed: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stdout:
            timed.append((time.monotonic(), line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    reader.join(5.0)
    return timed


def _arm_still_after_hold(arm: list[tuple[float, np.ndarray]], timed: list[tuple[float, str]], t_fault: float,
                          t_exit: float) -> None:
    """The runner printed its HOLD line soon after the fault, and from ``STILL_AFTER_HOLD_S`` after that line
    until the runner exited every arm joint state reports zero velocity."""
    t_hold = next((t for t, line in timed if "HOLD:" in line), None)
    assert t_hold is not None, "".join(line for _, line in timed)
    assert t_hold - t_fault < HOLD_SEEN_S, f"the runner held {t_hold - t_fault:.2f} s after the fault"
    after = [(t - t_hold, np.abs(v).max()) for t, v in arm if t_hold < t < t_exit]
    still = [v for dt, v in after if dt > STILL_AFTER_HOLD_S]
    assert still, "no arm joint states after the hold"
    moving = [(round(dt, 2), round(float(v), 4)) for dt, v in after if v >= 0.01]
    assert max(still) < 0.01, f"arm moving after the hold (s after the HOLD line, rad/s): {moving[-8:]}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_runner_holds_reports_and_exits_on(sig, observer, tmp_path):
    ckpt, arm = observer
    before = set(stale_fastdds_segments())
    proc, lines = _start_runner(ckpt, tmp_path)
    children = _children(proc.pid)
    assert len(children) >= 3, f"node processes of the runner: {children}"
    t_sig = time.monotonic()
    proc.send_signal(sig)
    timed = _read_until_exit(proc, timeout=30)
    took = time.monotonic() - t_sig
    text = "".join(lines) + "".join(line for _, line in timed)
    assert "did not end within" not in text, text + _stack_dumps(tmp_path)  # every node ended on the runner's SIGINT
    assert took < EXIT_BUDGET_S, f"the runner took {took:.1f} s to exit after {sig.name}:\n{text}"
    assert proc.returncode == 128 + sig.value, text
    assert f"HOLD: runner received {sig.name}" in text  # the hold came first, with its reason
    assert f"interrupted by {sig.name}" in text and "camera-frame-to-chunk latency" in text  # the report so far
    assert "devices held: arm" in text and "hand" in text.split("devices held:")[1]
    assert "Traceback" not in text and "RCLError" not in text, text
    _arm_still_after_hold(arm, timed, t_sig, t_sig + took)
    time.sleep(0.5)
    assert not _alive(children), f"node processes left behind: {_alive(children)}"
    assert set(stale_fastdds_segments()) <= before, "shared-memory segments left behind"


def _stack_dumps(workdir: Path) -> str:
    """The thread stacks a stuck node process printed to its log (SIGUSR1 from the runner)."""
    out = []
    for log in sorted(workdir.glob("*.log")):
        text = log.read_text(errors="replace")
        if "most recent call first" in text:
            out.append(f"\n--- {log.name}:\n" + text[text.index("Thread 0x") if "Thread 0x" in text else 0:][-4000:])
    return "".join(out)


def _log_tails(workdir: Path) -> str:
    return "".join(f"\n--- {log.name}:\n" + log.read_text(errors="replace")[-3000:]
                   for log in sorted(workdir.glob("*.log")))


HANGS_IN_SHUTDOWN = """
import time
from jala_ros.node_utils import init_ros
init_ros(exit_with_parent=False)
def hang_in_shutdown():
    time.sleep(120)
print("ready", flush=True)
try:
    while True:
        time.sleep(0.05)
except KeyboardInterrupt:  # SIGINT from the runner: the node's shutdown starts ... and never ends
    hang_in_shutdown()
"""


def test_a_node_process_that_hangs_in_its_shutdown_is_killed_and_its_stacks_are_in_its_log(tmp_path):
    """The runner's last resort: a node process still running ``timeout`` s after SIGINT (its handler already
    ran, so it ignores SIGTERM) prints its threads' stacks on SIGUSR1 and is killed; ``stop`` names it."""
    procs = GraphProcesses([], loopback_env(DOMAIN), tmp_path)
    spec = NodeSpec("stuck", "jala_ros", "stuck_node", "stuck", "/jala", {})
    p = procs._launch(spec, [sys.executable, "-c", HANGS_IN_SHUTDOWN])
    procs.procs.append(p)
    end = time.monotonic() + 60
    while "ready" not in p.log.read_text() and time.monotonic() < end:
        assert p.popen.poll() is None, p.log.read_text()
        time.sleep(0.05)
    t0 = time.monotonic()
    stuck = procs.stop(timeout=1.0)
    took = time.monotonic() - t0
    assert p.popen.returncode == -signal.SIGKILL, (p.popen.returncode, p.log.read_text())
    assert len(stuck) == 1 and "stuck process did not end within 1 s of SIGINT and was killed" in stuck[0], stuck
    assert str(p.log) in stuck[0]
    assert "hang_in_shutdown" in p.log.read_text(), p.log.read_text()  # where it hung, from faulthandler
    assert took < 1.0 + 0.2 + 2.0 + 1.0, took


HANGS_IN_SHUTDOWN_UNDER_A_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=open(sys.argv[2], "ab"), stderr=subprocess.STDOUT)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_node_process_that_hangs_in_its_shutdown_after_its_parent_died_kills_itself(tmp_path):
    """The last resort once the runner is gone (SIGKILL: nobody is left to escalate): the orphan's parent watch
    sends it SIGTERM; its shutdown hangs; ``grace_s`` later it prints its stacks to its log and SIGKILLs itself."""
    log = tmp_path / "orphan.log"
    script = HANGS_IN_SHUTDOWN.replace("init_ros(exit_with_parent=False)",
                                       "init_ros(exit_with_parent=False)\n"
                                       "from jala_ros.node_utils import watch_parent\nwatch_parent(grace_s=1.0)")
    env = loopback_env(DOMAIN)
    env["PYTHONPATH"] = python_path(env)
    parent = subprocess.Popen([sys.executable, "-c", HANGS_IN_SHUTDOWN_UNDER_A_PARENT, script, str(log)],
                              stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    child = int(parent.stdout.readline())
    end = time.monotonic() + 60
    while "ready" not in (text := log.read_text() if log.exists() else "") and time.monotonic() < end:
        assert _alive({child}), text
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    t0 = time.monotonic()
    while _alive({child}) and time.monotonic() < t0 + 10.0:
        time.sleep(0.05)
    took = time.monotonic() - t0
    text = log.read_text()
    assert not _alive({child}), f"the orphan is still running:\n{text}"
    assert 1.0 <= took < 1.0 + 3.0, (took, text)  # SIGTERM within 0.1 s, then 1 s of grace
    assert "still running 1 s after its parent" in text and "hang_in_shutdown" in text, text


def test_runner_sigkill_takes_its_node_processes_with_it(observer, tmp_path):
    ckpt, _ = observer
    before = set(stale_fastdds_segments())
    proc, _ = _start_runner(ckpt, tmp_path)
    children = _children(proc.pid)
    assert len(children) >= 3
    # the runner's own participant (its monitor node) cannot clean up after SIGKILL: the next runner removes it
    own = {t.removesuffix("_el") for t in open_file_targets(proc.pid) if t.startswith("/dev/shm/fastrtps_")}
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    end = time.monotonic() + 10.0
    while _alive(children) and time.monotonic() < end:
        time.sleep(0.1)
    assert not _alive(children), f"orphaned node processes: {_alive(children)}" + _log_tails(tmp_path)
    # they shut down (SIGTERM from the kernel), so they removed their own shared memory
    leftover = {f.removesuffix("_el") for f in set(stale_fastdds_segments()) - before
                if not os.path.basename(f).startswith(("fastrtps_port", "sem."))}
    self_killed = [log.name for log in tmp_path.glob("*.log") if "then it kills itself" in log.read_text()]
    if not self_killed:
        assert own and leftover <= own, f"segments of the node processes left behind: {leftover - own}"
        return
    # a node process whose shutdown hung killed itself (the parent watch's last resort): what it leaves in
    # /dev/shm is stale, and the next runner's clean-up removes it
    warnings.warn(f"shutdown hung after the runner's SIGKILL, the process killed itself: {self_killed}"
                  + _log_tails(tmp_path))
    remove_stale_fastdds_segments()
    assert not {f.removesuffix("_el") for f in set(stale_fastdds_segments()) - before} - own


def test_a_node_process_dying_under_the_runner_ends_in_a_hold_first(observer):
    """The policy process dies mid-rollout: the runner holds the devices that are still alive, records why,
    reports, and stops the rest (exit code 1)."""
    ckpt, arm = observer
    proc, lines = _start_runner(ckpt)
    children = _children(proc.pid)
    policy = [p for p in children if "jala_ros.policy_node" in Path(f"/proc/{p}/cmdline").read_bytes().decode(
        errors="replace").replace("\0", " ")]
    assert len(policy) == 1, children
    t_kill = time.monotonic()
    os.kill(policy[0], signal.SIGKILL)
    timed = _read_until_exit(proc, timeout=60)
    t_exit = time.monotonic()
    text = "".join(lines) + "".join(line for _, line in timed)
    assert proc.returncode == 1, text
    assert "HOLD: runner: policy process exited with code -9" in text, text
    assert "devices held: arm" in text, text
    assert "Traceback" not in text
    _arm_still_after_hold(arm, timed, t_kill, t_exit)
    time.sleep(0.5)
    assert not _alive(children)
