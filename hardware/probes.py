"""What the device probes of ``jala-hardware-check`` share: the result and target types and small network helpers.

A device kind's probe (``hardware.registry.DeviceKind.probe``) is ``probe(targets, timeout_s) -> [ProbeResult]``:
``targets`` holds every configured device of that kind (``ProbeTarget``: the table name, the driver's own config
dataclass, and the probe-only options), so a probe can share one SDK load or bus scan between them. A probe
reports problems as results (``ok=False`` with the reason and a hint) and never raises for a missing device.
"""
from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ProbeResult:
    device: str  # e.g. "robot", "hand", "camera wrist", "realsense sdk"
    target: str  # address / serial probed
    ok: bool
    detail: str
    hint: str = ""

    @property
    def status(self) -> str:
        return "OK" if self.ok else "MISSING"


@dataclass(frozen=True)
class ProbeTarget:
    """One device to probe: ``name`` as shown in the table ("robot", "hand", "camera wrist"), ``config`` an
    instance of the kind's driver config dataclass, ``options`` an instance of its probe-options dataclass (or
    None when the kind has none)."""

    name: str
    config: Any
    options: Any = None


def tcp_connect(host: str, port: int, timeout: float) -> tuple[socket.socket | None, str, str]:
    """(connected socket or None, reason, kind) of a TCP connect; kind in ok/refused/timeout/unreachable/resolve/
    error. The caller closes the socket."""
    try:
        return socket.create_connection((host, port), timeout=timeout), f"TCP port {port} open", "ok"
    except socket.gaierror as exc:
        return None, f"cannot resolve {host!r} ({exc.strerror})", "resolve"
    except ConnectionRefusedError:
        return None, f"connection refused on port {port}", "refused"
    except (socket.timeout, TimeoutError):
        return None, f"no answer within {timeout:g} s", "timeout"
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN):
            return None, f"{exc.strerror or exc}", "unreachable"
        return None, f"{exc.strerror or exc}", "error"


def tcp_probe(host: str, port: int, timeout: float) -> tuple[bool, str, str]:
    """(ok, reason, kind) of a TCP connect (closed again at once); kinds as ``tcp_connect``."""
    sock, reason, kind = tcp_connect(host, port, timeout)
    if sock is not None:
        sock.close()
    return sock is not None, reason, kind


def with_timeout(fn: Callable[[], T], timeout: float) -> T:
    """Run ``fn`` in a daemon thread; its return value, its exception, or TimeoutError after ``timeout``."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True, name="probe")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def serial_ports() -> list[str]:
    """Serial ports on this machine (for hints; empty when pyserial cannot list them)."""
    try:
        from serial.tools import list_ports

        return sorted(p.device for p in list_ports.comports())
    except Exception:  # noqa: BLE001 - only for a hint
        return []
