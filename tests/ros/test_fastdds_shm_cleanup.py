"""jala_bringup.shm_cleanup against real rclpy (Fast DDS SHM transport) processes.

A victim process (ROS_DOMAIN_ID 73) and a survivor (74, another ROS graph on the same machine) each create a
publisher and a subscriber and print READY once they received their own message. The Fast DDS files each one
owns in /dev/shm are read from its /proc/<pid>/fd (the lock files it holds) and checked against the /dev/shm
diff. While both live nothing of theirs is listed or removed; after SIGKILL the victim's files are listed and
removed, the survivor's stay and it keeps receiving messages.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.helpers import ROS_SRC, use_ros_packages, wait_until

use_ros_packages()
pytest.importorskip("rclpy")

from jala_bringup.ros_env import loopback_env, open_file_targets  # noqa: E402
from jala_bringup.shm_cleanup import SHM_DIR, remove_stale_fastdds_segments, stale_fastdds_segments  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.isdir(SHM_DIR),
                                reason="Linux /dev/shm only")

VICTIM_DOMAIN = 73
SURVIVOR_DOMAIN = 74
STRESS_DOMAIN = 75

NODE = textwrap.dedent("""
    import os, sys, threading, rclpy
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node("shm_cleanup_probe")
    me = str(os.getpid())
    count = {"own": 0, "other": 0}
    def on_msg(msg):
        count["own" if msg.data.split(" ")[0] == me else "other"] += 1
    sub = node.create_subscription(String, "/jala_test/shm_probe", on_msg, 10)
    pub = node.create_publisher(String, "/jala_test/shm_probe", 10)
    node.create_timer(0.05, lambda: pub.publish(String(data=me + " " + "x" * 1000)))
    def commands():
        for line in sys.stdin:
            print("COUNT", count["own"], count["other"], flush=True)
    threading.Thread(target=commands, daemon=True).start()
    while count["own"] == 0:
        rclpy.spin_once(node, timeout_sec=0.1)
    print("READY", flush=True)
    rclpy.spin(node)
""")

LOCK_RE = re.compile(r"^(fastrtps|fastdds)_(port\d+|[0-9a-f]{16})_(el|sl)$")


def fastdds_names() -> set[str]:
    return {n for n in os.listdir(SHM_DIR) if n.startswith(("fastrtps", "fastdds", "sem.fastrtps", "sem.fastdds"))}


def unlinked_shm_files(pid: int) -> list[str]:
    """Fast DDS files process ``pid`` still holds open or mapped although their names were removed."""
    targets = open_file_targets(pid)
    with open(f"/proc/{pid}/maps") as f:
        targets += [line.split(None, 5)[-1].strip() for line in f if len(line.split()) >= 6]
    return sorted({t for t in targets if t.startswith(SHM_DIR + "/fast") and t.endswith(" (deleted)")})


def owned_files(pid: int) -> set[str]:
    """The Fast DDS files process ``pid`` owns: the lock files it holds open, their segments, port mutexes."""
    assert not unlinked_shm_files(pid), unlinked_shm_files(pid)
    out = set()
    for target in open_file_targets(pid):
        name = os.path.basename(target)
        if os.path.dirname(target) == SHM_DIR and LOCK_RE.match(name):
            base = name[:-3]
            out |= {name, base}
            if "_port" in base:
                out.add(f"sem.{base}_mutex")
    return {n for n in out if os.path.lexists(os.path.join(SHM_DIR, n))}


def start(domain: int) -> subprocess.Popen:
    env = loopback_env(domain)
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([sys.executable, "-c", NODE], env=env, cwd=str(ROS_SRC), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)


def read_line(proc: subprocess.Popen, prefix: str, timeout: float) -> str:
    """The next stdout line of ``proc`` that starts with ``prefix`` (reads with a deadline, no fixed sleeps)."""
    import selectors

    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = proc.stdout.readline()
                if not line:
                    raise AssertionError(f"process exited (rc={proc.poll()}) before {prefix!r}")
                if line.startswith(prefix):
                    return line.strip()
    raise AssertionError(f"no {prefix!r} line within {timeout} s")


def received(proc: subprocess.Popen) -> tuple[int, int]:
    """(own, other) messages ``proc`` received so far: its own, those of other processes."""
    proc.stdin.write("?\n")
    proc.stdin.flush()
    _, own, other = read_line(proc, "COUNT", 5.0).split()
    return int(own), int(other)


def held_lock_files() -> set[str]:
    """Paths in /dev/shm of the files a flock is held on (any process), from /proc/locks."""
    held = set()
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[2] != "->":
                held.add(parts[5])  # major:minor:inode (hex, hex, decimal)
    out = set()
    for name in os.listdir(SHM_DIR):
        try:
            st = os.lstat(os.path.join(SHM_DIR, name))
        except OSError:
            continue
        if f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}" in held:
            out.add(os.path.join(SHM_DIR, name))
    return out


def groups(files: set[str]) -> dict[str, set[str]]:
    """Files by segment / port (key: the lock file's path)."""
    out: dict[str, set[str]] = {}
    for n in files:
        if LOCK_RE.match(n):
            base = n[:-3]
            out[os.path.join(SHM_DIR, n)] = {os.path.join(SHM_DIR, m) for m in files
                                             if m in (n, base, f"sem.{base}_mutex")}
    return out


def test_stale_segments_of_killed_process_are_removed_live_ones_kept():
    paths = lambda names: {os.path.join(SHM_DIR, n) for n in names}  # noqa: E731
    before = fastdds_names()
    victim = start(VICTIM_DOMAIN)
    survivor = start(SURVIVOR_DOMAIN)
    try:
        read_line(victim, "READY", 20.0)
        read_line(survivor, "READY", 20.0)
        created = fastdds_names() - before
        victim_files = owned_files(victim.pid)
        survivor_files = owned_files(survivor.pid)
        # a participant segment + its lock, and ports (segment, _el/_sl lock, semaphore) for each process
        for files in (victim_files, survivor_files):
            segment = {n for n in files if re.match(r"^(fastrtps|fastdds)_[0-9a-f]{16}(_el)?$", n)}
            assert len(segment) == 2, files
            assert segment <= created  # a fresh random name (port names are reused: a zombie port is reset)
            assert any(re.match(r"^(fastrtps|fastdds)_port\d+$", n) for n in files), files
            assert any(re.match(r"^sem\.(fastrtps|fastdds)_port\d+_mutex$", n) for n in files), files
        assert not victim_files & survivor_files
        assert set(groups(victim_files | survivor_files)) <= held_lock_files()  # each lock file is flock-held

        # while both live: nothing of theirs is stale, a cleanup leaves them alone
        stale = set(stale_fastdds_segments())
        assert not stale & paths(victim_files | survivor_files)
        removed = set(remove_stale_fastdds_segments())
        assert not removed & paths(victim_files | survivor_files)
        assert victim_files | survivor_files <= fastdds_names()

        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        # Port numbers 7000.. are taken first come first served by every Fast DDS process on the machine: one
        # starting meanwhile (another ROS graph) may reset a dead port and own that name now; and files may be
        # removed by another cleaner. The victim's segment has a random name: it must be listed and removed.
        def expected() -> set[str]:
            held = held_lock_files()
            return {p for lock, files in groups(victim_files).items() if lock not in held
                    for p in files if os.path.lexists(p)}

        victim_segment = next(iter(groups({n for n in victim_files if "_port" not in n}).values()))
        assert victim_segment <= expected()
        exp, stale = expected(), set(stale_fastdds_segments())
        assert exp <= stale, exp - stale
        assert victim_segment <= stale
        assert not stale & paths(survivor_files)

        n0 = received(survivor)[0]
        log: list[str] = []
        removed = set(remove_stale_fastdds_segments(log=log.append))
        assert victim_segment <= removed
        held = held_lock_files()
        for lock, files in groups(victim_files).items():
            if lock not in held:  # not taken over: all gone, by this cleanup unless someone else was faster
                assert not any(os.path.lexists(p) for p in files), files
        assert not removed & paths(survivor_files)
        assert survivor_files <= fastdds_names()
        for p in removed:  # one log line per removed segment / port, naming its files
            assert any(os.path.basename(p) in line and line.startswith("shm cleanup: removed") for line in log)
        assert not victim_segment & set(stale_fastdds_segments())

        # the survivor is unaffected: alive and still receiving its own messages
        assert survivor.poll() is None
        wait_until(lambda: received(survivor)[0] > n0 + 3, timeout=5.0, period=0.1)
        assert owned_files(survivor.pid) == survivor_files  # (and none of its files is unlinked)
    finally:
        for p in (victim, survivor):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        remove_stale_fastdds_segments()  # the processes killed here leave theirs behind too


def test_cleanup_running_during_startup_never_breaks_live_processes():
    """remove_stale_fastdds_segments() in a loop while two processes of one graph start and talk over SHM.

    Races with Fast DDS's own creation protocol (segment lock taken before the segment exists, the transient
    unlocked ``_el`` file of ``Port::is_zombie``, ports shared by both processes) must not cost either process
    a file: both come up, exchange messages through each other's segments, and keep all their files.
    """
    stop = threading.Event()
    rounds = [0]

    def cleaner():
        while not stop.is_set():
            remove_stale_fastdds_segments()
            rounds[0] += 1
            stop.wait(0.002)

    th = threading.Thread(target=cleaner, daemon=True)
    th.start()
    a = start(STRESS_DOMAIN)
    b = start(STRESS_DOMAIN)
    try:
        read_line(a, "READY", 20.0)
        read_line(b, "READY", 20.0)
        wait_until(lambda: received(a)[1] > 0 and received(b)[1] > 0, timeout=15.0, period=0.1)
        stop.set()
        th.join(timeout=5)
        assert rounds[0] > 10
        # owned_files() fails if a file either process holds open or maps was unlinked (names alone could match
        # an unrelated stale file of the same port number that the loop rightly removed)
        files = {p: owned_files(p.pid) for p in (a, b)}
        for p, mine in files.items():
            assert p.poll() is None
            segment = next(n for n in mine if re.match(r"^(fastrtps|fastdds)_[0-9a-f]{16}$", n))
            peer = b if p is a else a
            # the peer maps this process's segment: the messages travel through shared memory
            wait_until(lambda: segment in open(f"/proc/{peer.pid}/maps").read(), timeout=5.0, period=0.1)
        # both keep talking to each other after the cleanup loop, with all their files in place
        n0 = {p: received(p)[1] for p in (a, b)}
        wait_until(lambda: all(received(p)[1] > n0[p] + 3 for p in (a, b)), timeout=5.0, period=0.1)
        assert all(files[p] <= fastdds_names() for p in (a, b))
        assert not set(stale_fastdds_segments()) & {os.path.join(SHM_DIR, n) for f in files.values() for n in f}
    finally:
        stop.set()
        for p in (a, b):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        remove_stale_fastdds_segments()
