"""FR3 probe for ``jala-hardware-check`` (registered with the ``franka_fr3`` arm kind).

libfranka's Connect handshake on the robot's command port 1337 (served only while FCI is active): the request
libfranka sends (protocol version + a UDP port), then the reply is parsed. OK only when the robot accepts; a robot
speaking another protocol version is reported with its version; a port that answers anything else, or nothing
within the timeout, is MISSING. The connection is closed right after the reply (the robot serves one libfranka
client at a time) and nothing else is sent: no motion, no settings. With ``franky`` (``FrankaProbeOptions``) also
a real libfranka connection through franky, in a child process, that reads the robot state (this applies franky's
default collision thresholds, as any franky client does). A hint says when this PC's kernel is not PREEMPT_RT.

Needs only the standard library: franky is imported by the child process only.
"""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from hardware.config_checks import ConfigProblems, is_int
from hardware.probes import ProbeResult, ProbeTarget, tcp_connect

FRANKA_COMMAND_PORT = 1337  # libfranka's TCP command port on the robot controller
# research_interface::robot::kVersion of the libfranka this project controls the robot with: libfranka 0.21.2, as
# bundled in franky-control 2.0.0's wheel (franky-sim 1.0.4 serves the same version). A robot whose system version
# speaks another one refuses the Connect with kIncompatibleLibraryVersion.
LIBFRANKA_PROTOCOL_VERSION = 10
LIBFRANKA_VERSION = "0.21.2"


@dataclass
class FrankaProbeOptions:
    """Probe-only settings of the FR3 check (besides ``FrankaArmConfig``): ``port`` the libfranka command port,
    ``franky`` also a full franky connect that reads the robot state."""

    port: int = FRANKA_COMMAND_PORT
    franky: bool = False

    def __post_init__(self) -> None:
        problems = ConfigProblems()
        problems.need(is_int(self.port) and 1 <= self.port <= 65535,
                      f"port must be an integer in 1..65535, got {self.port!r}")
        problems.need(isinstance(self.franky, bool), f"franky must be true/false, got {self.franky!r}")
        problems.raise_if_any(ValueError, "FR3 probe options")


# libfranka's robot protocol (research_interface/robot/service_types.h, packed, little-endian): every TCP message
# starts with a CommandHeader {uint32 command, uint32 command_id, uint32 size (whole message, header included)}.
# Connect (command 0): request {uint16 version, uint16 udp_port} -> 16 bytes; response {uint8 status (0 success,
# 1 incompatible library version), uint16 version (the robot's)} -> 15 bytes. (franky-sim pads its response to
# 20 bytes; the status byte comes first either way, and libfranka reads ``size`` bytes.)
_LF_HEADER = struct.Struct("<III")
_LF_CONNECT_REQUEST = struct.Struct("<HH")
_LF_CONNECT = 0
_LF_CONNECT_RESPONSE_SIZE = _LF_HEADER.size + 3
_LF_MAX_RESPONSE_SIZE = 1024  # a Connect response is tens of bytes: anything bigger is not libfranka talking
_LF_SUCCESS, _LF_INCOMPATIBLE = 0, 1


@dataclass(frozen=True)
class LibfrankaHandshake:
    """Outcome of libfranka's Connect handshake. kind: ok / incompatible / garbage / silent / closed, or a TCP
    connect failure kind (refused / timeout / unreachable / resolve / error)."""

    kind: str
    detail: str
    server_version: int | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def _recv_exactly(sock: socket.socket, n: int, deadline: float) -> bytes:
    """Up to ``n`` bytes: fewer when the peer closes or ``deadline`` (monotonic) passes first."""
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(n - len(buf))
        except (socket.timeout, TimeoutError):
            break
        except (ConnectionResetError, ConnectionAbortedError):  # the peer closed (with a reset): no more bytes
            break
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def libfranka_handshake(host: str, port: int = FRANKA_COMMAND_PORT, timeout: float = 2.0,
                        version: int = LIBFRANKA_PROTOCOL_VERSION) -> LibfrankaHandshake:
    """Send libfranka's Connect request to ``host:port`` and parse the reply, within ``timeout`` seconds in all.

    Sends only the Connect request (no motion, no settings) and closes the connection right after the reply, as a
    libfranka client that exits does: the robot serves one libfranka client at a time and frees the slot when the
    connection closes. The UDP port named in the request is a socket bound here for the duration (the robot
    starts streaming its state there on success), closed afterwards."""
    deadline = time.monotonic() + timeout
    sock, reason, kind = tcp_connect(host, port, timeout)
    if sock is None:
        return LibfrankaHandshake(kind, reason)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("", 0))
        udp_port = udp.getsockname()[1]
        command_id = 0  # libfranka's first command on a connection
        request = _LF_CONNECT_REQUEST.pack(version, udp_port)
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            sock.sendall(_LF_HEADER.pack(_LF_CONNECT, command_id, _LF_HEADER.size + len(request)) + request)
        except OSError as exc:
            return LibfrankaHandshake("closed", f"port {port} accepted the connection, then dropped it "
                                                f"({exc.strerror or exc})")
        head = _recv_exactly(sock, _LF_HEADER.size, deadline)
        if not head:
            silent = time.monotonic() >= deadline
            return LibfrankaHandshake(
                "silent" if silent else "closed",
                f"port {port} accepts connections but sent no libfranka reply within {timeout:g} s" if silent else
                f"port {port} accepted the connection but closed it without a libfranka reply")
        not_libfranka = f"port {port} answers but not with the libfranka protocol"
        if len(head) < _LF_HEADER.size:
            return LibfrankaHandshake("garbage", f"{not_libfranka} ({len(head)} bytes: {head[:16].hex(' ')})")
        command, reply_id, size = _LF_HEADER.unpack(head)
        if command != _LF_CONNECT or reply_id != command_id or not \
                _LF_CONNECT_RESPONSE_SIZE <= size <= _LF_MAX_RESPONSE_SIZE:
            return LibfrankaHandshake("garbage", f"{not_libfranka} (got {head.hex(' ')})")
        payload = _recv_exactly(sock, size - _LF_HEADER.size, deadline)
        if len(payload) < size - _LF_HEADER.size:
            return LibfrankaHandshake("garbage", f"{not_libfranka} (a Connect reply of {size} bytes announced, "
                                                 f"{_LF_HEADER.size + len(payload)} received)")
        status = payload[0]
        if status == _LF_SUCCESS:
            return LibfrankaHandshake("ok", f"libfranka Connect accepted (protocol version {version}, "
                                            f"libfranka {LIBFRANKA_VERSION})", version)
        if status == _LF_INCOMPATIBLE:
            server_version = struct.unpack_from("<H", payload, 1)[0]
            return LibfrankaHandshake(
                "incompatible", f"the robot speaks libfranka protocol version {server_version}; this PC's "
                                f"libfranka {LIBFRANKA_VERSION} (franky-control 2.0.0) speaks version {version}",
                server_version)
        return LibfrankaHandshake("garbage", f"{not_libfranka} (Connect status {status} is not a libfranka one)")
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        udp.close()


_ROBOT_HINTS = {
    "refused": "the controller answers but libfranka's port is closed: is FCI enabled in Desk (unlock the joints, "
               "then 'Activate FCI')? Check the address is the Control box's, not the arm's.",
    "timeout": "no answer: is the Ethernet cable in the Control box's LAN port (not the arm base), is the robot "
               "powered and booted, and is this PC on the robot's subnet (e.g. 172.16.0.1/24)?",
    "unreachable": "no route to the robot: give this PC a static address on the robot network "
                   "(e.g. 172.16.0.1/24 when the robot is 172.16.0.2)",
    "resolve": "use the robot's IP address (Desk > Settings > Network)",
    "error": "check the network settings of this PC and the robot",
    "incompatible": "libfranka and the robot's system version do not match: use the franky/libfranka build for "
                    "this robot's system version (libfranka's compatibility table), or update the robot",
    "garbage": "this address is not a Franka controller's FCI port (another service answers there): check the "
               "robot address and port",
    "silent": "another libfranka client may hold the connection (the robot serves one at a time: stop other "
              "franky/franka_ros programs), or this address is not a Franka controller",
    "closed": "the robot may be serving another libfranka client, or FCI was just deactivated: check Desk",
}


def realtime_kernel() -> bool:
    """Whether this machine runs a PREEMPT_RT kernel (libfranka's 1 kHz loop needs one on the robot PC)."""
    try:
        with open("/sys/kernel/realtime", encoding="ascii") as fh:
            if fh.read().strip() == "1":
                return True
    except OSError:
        pass
    return "PREEMPT_RT" in os.uname().version


_RT_HINT = ("this PC's kernel is not PREEMPT_RT: franky/libfranka refuse to control the robot without one "
            "(install a realtime kernel on the robot PC)")


def probe_fr3(targets: Sequence[ProbeTarget], timeout: float) -> list[ProbeResult]:
    """The registry probe of the ``franka_fr3`` kind: ``probe_robot`` for each target."""
    return [probe_robot(t, timeout) for t in targets]


def probe_robot(robot: ProbeTarget, timeout: float) -> ProbeResult:
    """One FR3: ``robot.config`` a FrankaArmConfig (``robot_ip``), ``robot.options`` FrankaProbeOptions."""
    name, ip = robot.name, robot.config.robot_ip
    opts = robot.options if robot.options is not None else FrankaProbeOptions()
    target = f"{ip}:{opts.port}"
    hs = libfranka_handshake(ip, opts.port, timeout)
    if not hs.ok:
        return ProbeResult(name, target, False, f"robot {ip}: {hs.detail}", _ROBOT_HINTS.get(hs.kind, ""))
    rt_hint = "" if realtime_kernel() else _RT_HINT
    if not opts.franky:
        return ProbeResult(name, target, True, f"{hs.detail}: FCI active (--franky does a full libfranka "
                           "connect)", rt_hint)

    # In a child process: libfranka's connect can take seconds and its threads must not outlive a timeout here.
    script = (
        "import sys, franky\n"
        "try:\n"
        "    r = franky.Robot(sys.argv[1], realtime_config=franky.RealtimeConfig.Ignore)\n"
        "    print('OK franky connected, robot mode', getattr(r.state, 'robot_mode', '?'))\n"
        "except Exception as e:\n"
        "    print('ERR', type(e).__name__ + ':', e)\n"
    )
    budget = max(timeout, 10.0)
    try:
        proc = subprocess.run([sys.executable, "-c", script, ip], capture_output=True, text=True,
                              timeout=budget)
    except subprocess.TimeoutExpired:
        return ProbeResult(name, target, False, f"robot {ip}: franky connect: no answer within {budget:g} s",
                           "the port is open but libfranka got no answer: restart FCI in Desk")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("OK ", "ERR "))]
    if lines and lines[-1].startswith("OK "):
        return ProbeResult(name, target, True, lines[-1][3:], rt_hint)
    text = lines[-1][4:] if lines else (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    if "version" in text.lower():
        hint = ("libfranka and the robot's system version do not match: use the franky/libfranka build for "
                "this robot's system version")
    elif "Network" in text or "connection" in text.lower():
        hint = "libfranka cannot connect to the robot on port 1337: is FCI enabled in Desk?"
    else:
        hint = "close other FCI clients (only one may be connected) and check Desk for errors"
    return ProbeResult(name, target, False, f"robot {ip}: franky connect failed: {text}", hint)
