"""Run franky-sim (PyPI ``franky-sim``: MuJoCo FR3 speaking the libfranka protocol) as a child process.

    with FrankySimProcess() as sim:
        arm = FrankaArm(FrankaArmConfig(robot_ip=sim.hostname, realtime="ignore"))

The simulator binds TCP 1337 on the first free loopback address 127.x.y.z (so several can run side by side) and
prints it; this class waits for that line. It is headless (no ``--render``), so no display or GL is needed.
Known limits of franky-sim 1.0.4 (from its source): no reflexes or limit errors, ``recover_from_errors`` always
succeeds, simulated joint PD (kp/kv = 10 s^-1) without velocity feed-forward, so measured positions lag the
commanded ones by about 0.1 s x velocity; about 0.9x real time on a loaded 2-core machine. Its UDP state socket is
bound to 0.0.0.0 (ephemeral port) by franky-sim itself, but it only sends to the connected client's address.

The simulator ends with the process that started it, however that one ends (an exception, a SIGKILL, a CI
timeout; ``jala_runtime.process.die_with_parent``), so a crashed test or benchmark leaves no simulator spinning
at 1 kHz behind it. Linux sends that signal when the *thread* that started the child ends, so start it from a
thread that lives as long as it should.
"""
from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time

from jala_runtime.process import die_with_parent

_ADDR_RE = re.compile(r"Connect to the server using '([0-9.]+)'")


class FrankySimProcess:
    def __init__(self, simulator: str = "mujoco", hostname: str | None = None, startup_timeout_s: float = 90.0,
                 python: str = sys.executable, extra_env: dict[str, str] | None = None):
        if hostname is not None and not hostname.startswith("127."):
            raise ValueError(f"franky-sim must stay on loopback (127.x.y.z), got {hostname!r}")
        self.simulator = simulator
        self.requested_hostname = hostname
        self.startup_timeout_s = startup_timeout_s
        self.python = python
        self.extra_env = dict(extra_env or {})
        self.hostname: str | None = None
        self.proc: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._found = threading.Event()

    def output(self) -> str:
        """Everything the simulator printed so far."""
        return "".join(self._lines)

    def start(self) -> str:
        cmd = [self.python, "-u", "-m", "franky_sim.run_server", "--simulator", self.simulator]
        if self.requested_hostname:
            cmd += ["--hostname", self.requested_hostname]
        env = dict(os.environ)
        env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                    "MKL_NUM_THREADS": "1"})
        env.update(self.extra_env)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True,
                                     preexec_fn=functools.partial(die_with_parent, os.getpid()))
        threading.Thread(target=self._pump, name="franky-sim-output", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._found.wait(0.1):
            if self.proc.poll() is not None:
                raise RuntimeError(f"franky-sim exited with code {self.proc.returncode} before serving:\n"
                                   f"{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"franky-sim did not print its address within {self.startup_timeout_s:.0f} s:\n"
                                   f"{self.output()[-3000:]}")
        return self.hostname

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line)
            m = _ADDR_RE.search(line)
            if m and not self._found.is_set():
                self.hostname = m.group(1)
                self._found.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # (SIGINT may be ignored when started from a background shell)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)

    def __enter__(self) -> "FrankySimProcess":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def franky_sim_assets_dir() -> str:
    """Folder inside the installed franky-sim wheel holding ``fr3.xml`` (MJCF), ``fr3.urdf`` and ``meshes/``."""
    import importlib.util

    spec = importlib.util.find_spec("franky_sim")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("franky-sim is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "assets")
