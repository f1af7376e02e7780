"""``jala-hardware-check``: is every configured device there? Probes each one with a short timeout and prints a
table of OK / MISSING with the reason and a hint. Exit code 0 when all configured devices answer, 1 when any
is missing, 2 for a bad command line or config file.

Probes (independent: one failing or hanging does not stop the others; they run in parallel)
* robot (Franka FR3): libfranka's Connect handshake on the robot's command port 1337 (served only while FCI is
  active): the request libfranka sends (protocol version + a UDP port), then the reply is parsed. OK only when
  the robot accepts; a robot speaking another protocol version is reported with its version; a port that
  answers anything else, or nothing within the timeout, is MISSING. The connection is closed right after the
  reply (the robot serves one libfranka client at a time) and nothing else is sent: no motion, no settings.
  With ``--franky`` also a real libfranka connection through franky that reads the robot state (this applies
  franky's default collision thresholds, as any franky client does). A hint says when this PC's kernel is not
  PREEMPT_RT.
* hand (Inspire RH56): Modbus TCP or RTU, read of the six ANGLE_ACT registers 1546..1551.
* cameras (RealSense L515): pyrealsense2 (and libusb) must load; each configured serial must be listed by
  ``rs.context``.

Config (YAML; every section optional, command-line options override it)::

    timeout_s: 2.0
    robot: {ip: 172.16.0.2, port: 1337, franky: false}
    hand: {transport: tcp, host: 192.168.11.210, port: 6000, device_id: 1}
    #  or hand: {transport: rtu, serial_port: /dev/ttyUSB0, baudrate: 115200, device_id: 1}
    cameras:
      - {name: wrist, serial: "f1230001"}
      - {name: scene, serial: "f1230002"}

A top-level ``hardware:`` mapping holding these keys is accepted too (so a larger runtime config can be used).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import errno
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

ANGLE_ACT_ADDRESS = 1546  # Inspire RH56 ANGLE_ACT: six 16-bit registers 1546..1551
HAND_DOF = 6
FRANKA_COMMAND_PORT = 1337  # libfranka's TCP command port on the robot controller
# research_interface::robot::kVersion of the libfranka this project controls the robot with: libfranka 0.21.2, as
# bundled in franky-control 2.0.0's wheel (franky-sim 1.0.4 serves the same version). A robot whose system version
# speaks another one refuses the Connect with kIncompatibleLibraryVersion.
LIBFRANKA_PROTOCOL_VERSION = 10
LIBFRANKA_VERSION = "0.21.2"


class CheckConfigError(ValueError):
    pass


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


@dataclass
class RobotTarget:
    ip: str
    port: int = FRANKA_COMMAND_PORT
    franky: bool = False


@dataclass
class HandTarget:
    transport: str = "tcp"
    host: str = "192.168.11.210"
    port: int = 6000
    serial_port: str = "/dev/ttyUSB0"
    baudrate: int = 115200
    device_id: int = 1

    @property
    def label(self) -> str:
        if self.transport == "rtu":
            return f"{self.serial_port}@{self.baudrate} id {self.device_id}"
        return f"{self.host}:{self.port} id {self.device_id}"


@dataclass
class CameraTarget:
    name: str
    serial: str


@dataclass
class CheckConfig:
    robot: RobotTarget | None = None
    hand: HandTarget | None = None
    cameras: list[CameraTarget] = field(default_factory=list)
    timeout_s: float = 2.0


# ------------------------------------------------------------------------------------------------ config
def _mapping(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckConfigError(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def _only(d: dict, allowed: set[str], what: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise CheckConfigError(f"unknown keys in {what}: {unknown}; allowed: {sorted(allowed)}")


def _int(v, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise CheckConfigError(f"{what} must be an integer in {lo}..{hi}, got {v!r}")
    return v


def config_from_dict(data: dict) -> CheckConfig:
    data = _mapping(data, "config")
    if "hardware" in data:
        data = _mapping(data["hardware"], "hardware")
    _only(data, {"robot", "hand", "cameras", "timeout_s"}, "config")
    cfg = CheckConfig()
    if "timeout_s" in data:
        t = data["timeout_s"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 60:
            raise CheckConfigError(f"timeout_s must be in (0, 60], got {t!r}")
        cfg.timeout_s = float(t)
    if data.get("robot") is not None:
        r = _mapping(data["robot"], "robot")
        _only(r, {"ip", "port", "franky"}, "robot")
        if not isinstance(r.get("ip"), str) or not r["ip"].strip():
            raise CheckConfigError("robot.ip must be a host name or address")
        cfg.robot = RobotTarget(ip=r["ip"].strip(), port=_int(r.get("port", FRANKA_COMMAND_PORT), "robot.port", 1,
                                                               65535), franky=bool(r.get("franky", False)))
    if data.get("hand") is not None:
        h = _mapping(data["hand"], "hand")
        _only(h, {"transport", "host", "port", "serial_port", "baudrate", "device_id"}, "hand")
        hand = HandTarget()
        hand.transport = h.get("transport", "tcp")
        if hand.transport not in ("tcp", "rtu"):
            raise CheckConfigError(f"hand.transport must be 'tcp' or 'rtu', got {hand.transport!r}")
        hand.host = str(h.get("host", hand.host))
        hand.port = _int(h.get("port", hand.port), "hand.port", 1, 65535)
        hand.serial_port = str(h.get("serial_port", hand.serial_port))
        hand.baudrate = _int(h.get("baudrate", hand.baudrate), "hand.baudrate", 1, 10_000_000)
        hand.device_id = _int(h.get("device_id", hand.device_id), "hand.device_id", 1, 247)
        cfg.hand = hand
    cams = data.get("cameras") or []
    if not isinstance(cams, list):
        raise CheckConfigError("cameras must be a list of {name, serial}")
    for i, c in enumerate(cams):
        if isinstance(c, (str, int)):
            c = {"serial": c}
        c = _mapping(c, f"cameras[{i}]")
        # RealSenseCameraConfig fields may be present (a runtime camera config): only name/serial matter here
        if "serial" not in c or not str(c["serial"]).strip():
            raise CheckConfigError(f"cameras[{i}] needs a serial")
        cfg.cameras.append(CameraTarget(name=str(c.get("name", f"camera{i}")), serial=str(c["serial"]).strip()))
    return cfg


def load_config(path: str) -> CheckConfig:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise CheckConfigError(f"cannot read config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CheckConfigError(f"config {path} is not valid YAML: {exc}") from exc
    return config_from_dict(data or {})


# ------------------------------------------------------------------------------------------------ probes
def _tcp_connect(host: str, port: int, timeout: float) -> tuple[socket.socket | None, str, str]:
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


def _tcp_probe(host: str, port: int, timeout: float) -> tuple[bool, str, str]:
    """(ok, reason, kind) of a TCP connect (closed again at once); kinds as ``_tcp_connect``."""
    sock, reason, kind = _tcp_connect(host, port, timeout)
    if sock is not None:
        sock.close()
    return sock is not None, reason, kind


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
    sock, reason, kind = _tcp_connect(host, port, timeout)
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


def _with_timeout(fn: Callable[[], str], timeout: float) -> str:
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


def probe_robot(robot: RobotTarget, timeout: float) -> ProbeResult:
    target = f"{robot.ip}:{robot.port}"
    hs = libfranka_handshake(robot.ip, robot.port, timeout)
    if not hs.ok:
        return ProbeResult("robot", target, False, f"robot {robot.ip}: {hs.detail}", _ROBOT_HINTS.get(hs.kind, ""))
    rt_hint = "" if realtime_kernel() else _RT_HINT
    if not robot.franky:
        return ProbeResult("robot", target, True, f"{hs.detail}: FCI active (--franky does a full libfranka "
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
        proc = subprocess.run([sys.executable, "-c", script, robot.ip], capture_output=True, text=True,
                              timeout=budget)
    except subprocess.TimeoutExpired:
        return ProbeResult("robot", target, False, f"robot {robot.ip}: franky connect: no answer within {budget:g} s",
                           "the port is open but libfranka got no answer: restart FCI in Desk")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("OK ", "ERR "))]
    if lines and lines[-1].startswith("OK "):
        return ProbeResult("robot", target, True, lines[-1][3:], rt_hint)
    text = lines[-1][4:] if lines else (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    if "version" in text.lower():
        hint = ("libfranka and the robot's system version do not match: use the franky/libfranka build for "
                "this robot's system version")
    elif "Network" in text or "connection" in text.lower():
        hint = "libfranka cannot connect to the robot on port 1337: is FCI enabled in Desk?"
    else:
        hint = "close other FCI clients (only one may be connected) and check Desk for errors"
    return ProbeResult("robot", target, False, f"robot {robot.ip}: franky connect failed: {text}", hint)


def _serial_ports() -> list[str]:
    try:
        from serial.tools import list_ports

        return sorted(p.device for p in list_ports.comports())
    except Exception:  # noqa: BLE001 - only for a hint
        return []


def probe_hand(hand: HandTarget, timeout: float) -> ProbeResult:
    target = hand.label
    if hand.transport == "tcp":
        ok, reason, kind = _tcp_probe(hand.host, hand.port, timeout)
        if not ok:
            hints = {
                "refused": "the address answers but nothing listens on this port: check the hand's Modbus TCP "
                           "port (6000 by default) and that the hand (or its TCP adapter) is powered",
                "timeout": "no answer: is the hand powered, and is this PC on the hand's subnet "
                           "(e.g. 192.168.11.x)?",
                "unreachable": "no route to the hand: give this PC an address on the hand's subnet",
            }
            return ProbeResult("hand", target, False, f"hand {hand.host}:{hand.port}: {reason}",
                               hints.get(kind, "check the hand's network settings"))
        from pymodbus.client import ModbusTcpClient

        client = ModbusTcpClient(hand.host, port=hand.port, timeout=timeout, retries=0)
    else:
        if not os.path.exists(hand.serial_port):
            return ProbeResult("hand", target, False, f"hand: no such serial port {hand.serial_port}",
                               f"plug in the USB-RS485 adapter; serial ports now: {_serial_ports()}")
        if not os.access(hand.serial_port, os.R_OK | os.W_OK):
            return ProbeResult("hand", target, False, f"hand: permission denied on {hand.serial_port}",
                               "add your user to the 'dialout' group (sudo usermod -aG dialout $USER), "
                               "then log in again")
        from pymodbus.client import ModbusSerialClient

        client = ModbusSerialClient(hand.serial_port, baudrate=hand.baudrate, timeout=timeout, retries=0)
    try:
        if not client.connect():
            return ProbeResult("hand", target, False, f"hand {target}: Modbus connection failed",
                               "check power and the connection settings")
        try:
            rr = client.read_holding_registers(ANGLE_ACT_ADDRESS, count=HAND_DOF, device_id=hand.device_id)
        except Exception as exc:  # noqa: BLE001 - pymodbus raises ModbusIOException on no answer
            return ProbeResult("hand", target, False, f"hand {target}: no Modbus answer ({exc})",
                               f"wrong device id ({hand.device_id})"
                               + (", baud rate or RS485 A/B wiring" if hand.transport == "rtu" else " or port")
                               + "? The hand must be powered and idle")
        if rr.isError():
            return ProbeResult("hand", target, False,
                               f"hand {target}: Modbus error reading ANGLE_ACT {ANGLE_ACT_ADDRESS}: {rr}",
                               f"this device does not serve the Inspire register map at device id {hand.device_id}")
        angles = list(rr.registers)
        if len(angles) != HAND_DOF:
            return ProbeResult("hand", target, False, f"hand {target}: got {len(angles)} registers, expected 6")
        detail = f"ANGLE_ACT {angles}"
        hint = ""
        if any(a > 1000 for a in angles):
            hint = "angles outside 0..1000: check the register map / byte order settings of the driver"
        return ProbeResult("hand", target, True, detail, hint)
    finally:
        client.close()


def probe_cameras(cameras: Sequence[CameraTarget], timeout: float) -> list[ProbeResult]:
    try:
        import pyrealsense2 as rs  # noqa: F401
    except (ImportError, OSError) as exc:
        hint = ("install libusb (sudo apt install libusb-1.0-0) and pyrealsense2==2.54.2.5684 on Python <= 3.11 "
                "(the last release with L515 support)")
        return [ProbeResult("realsense sdk", "pyrealsense2", False, f"cannot load pyrealsense2: {exc}", hint)] + [
            ProbeResult(f"camera {c.name}", c.serial, False, "not probed: pyrealsense2 is not available")
            for c in cameras]
    from hardware.realsense.camera import list_devices

    try:
        devices = _with_timeout(lambda: list_devices(), max(timeout, 5.0))
    except Exception as exc:  # noqa: BLE001
        return [ProbeResult("realsense sdk", "rs.context", False, f"cannot list RealSense devices: {exc}",
                            "check USB permissions (udev rules 99-realsense-libusb.rules) and libusb")]
    serials = [d.serial for d in devices]
    out = [ProbeResult("realsense sdk", "pyrealsense2", True, f"loaded; connected cameras: {serials}")]
    by_serial = {d.serial: d for d in devices}
    for c in cameras:
        d = by_serial.get(c.serial)
        if d is None:
            out.append(ProbeResult(f"camera {c.name}", c.serial, False,
                                   f"no camera with serial {c.serial}; connected: {serials}",
                                   "check the USB-C cable (USB 3) and port; the serial is printed on the camera "
                                   "and listed by rs-enumerate-devices"))
            continue
        hint = []
        if d.usb_type.startswith("2"):
            hint.append(f"connected over USB {d.usb_type}: use a USB 3 port/cable for full resolution")
        if "L515" not in d.name:
            hint.append(f"this is a {d.name}, not an L515")
        out.append(ProbeResult(f"camera {c.name}", c.serial, True,
                               f"{d.name}, firmware {d.firmware or '?'}, USB {d.usb_type or '?'}", "; ".join(hint)))
    return out


def run_checks(cfg: CheckConfig) -> list[ProbeResult]:
    """Run every configured probe (in parallel); a probe that crashes is reported as MISSING, never raised."""
    jobs: list[tuple[str, str, Callable[[], list[ProbeResult]]]] = []
    if cfg.robot is not None:
        jobs.append(("robot", f"{cfg.robot.ip}:{cfg.robot.port}", lambda: [probe_robot(cfg.robot, cfg.timeout_s)]))
    if cfg.hand is not None:
        jobs.append(("hand", cfg.hand.label, lambda: [probe_hand(cfg.hand, cfg.timeout_s)]))
    if cfg.cameras:
        jobs.append(("cameras", ",".join(c.serial for c in cfg.cameras),
                     lambda: probe_cameras(cfg.cameras, cfg.timeout_s)))
    results: list[ProbeResult] = []
    with cf.ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = []
        for name, target, fn in jobs:
            futures.append((name, target, time.monotonic(), pool.submit(fn)))
        for name, target, t0, fut in futures:
            try:
                res = fut.result(timeout=cfg.timeout_s * 3 + 10)
                results.extend(res)
            except Exception as exc:  # noqa: BLE001 - a broken probe must not hide the others
                results.append(ProbeResult(name, target, False, f"probe failed: {type(exc).__name__}: {exc}"))
    return results


def format_table(results: Sequence[ProbeResult]) -> str:
    rows = [("DEVICE", "TARGET", "STATUS", "DETAIL")] + [(r.device, r.target, r.status, r.detail) for r in results]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3])
        if k > 0 and results[k - 1].hint:
            lines.append(" " * (sum(widths) + 6) + "hint: " + results[k - 1].hint)
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- main
def _parse_camera(text: str) -> CameraTarget:
    name, sep, serial = text.partition("=")
    if not sep:
        name, serial = "", text
    if not serial.strip():
        raise argparse.ArgumentTypeError(f"--camera needs SERIAL or NAME=SERIAL, got {text!r}")
    return CameraTarget(name=name.strip(), serial=serial.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jala-hardware-check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML device config (see module docs); options below override it")
    p.add_argument("--robot-ip", help="Franka FR3 controller address, e.g. 172.16.0.2")
    p.add_argument("--robot-port", type=int, help=f"libfranka command port (default {FRANKA_COMMAND_PORT})")
    p.add_argument("--franky", action="store_true", help="also connect through franky and read the robot state")
    p.add_argument("--hand-host", help="Inspire hand Modbus TCP address (transport tcp)")
    p.add_argument("--hand-port", type=int, help="Inspire hand Modbus TCP port (default 6000)")
    p.add_argument("--hand-serial", help="Inspire hand serial port for Modbus RTU, e.g. /dev/ttyUSB0")
    p.add_argument("--hand-baudrate", type=int, help="Modbus RTU baud rate (default 115200)")
    p.add_argument("--hand-device-id", type=int, help="Modbus device id of the hand (default 1)")
    p.add_argument("--camera", action="append", type=_parse_camera, metavar="[NAME=]SERIAL",
                   help="RealSense serial to expect (repeatable; replaces the config's cameras)")
    p.add_argument("--timeout", type=float, help="per-probe timeout in seconds (default 2)")
    p.add_argument("--skip", action="append", choices=("robot", "hand", "cameras"), default=[],
                   help="do not probe this device kind")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    return p


def config_from_args(args: argparse.Namespace) -> CheckConfig:
    cfg = load_config(args.config) if args.config else CheckConfig()
    if args.robot_ip:
        cfg.robot = RobotTarget(ip=args.robot_ip, port=cfg.robot.port if cfg.robot else FRANKA_COMMAND_PORT,
                                franky=cfg.robot.franky if cfg.robot else False)
    if cfg.robot is not None:
        if args.robot_port is not None:
            cfg.robot.port = _int(args.robot_port, "--robot-port", 1, 65535)
        cfg.robot.franky = cfg.robot.franky or args.franky
    if args.hand_host or args.hand_serial:
        cfg.hand = cfg.hand or HandTarget()
        if args.hand_host:
            cfg.hand.transport, cfg.hand.host = "tcp", args.hand_host
        if args.hand_serial:
            cfg.hand.transport, cfg.hand.serial_port = "rtu", args.hand_serial
    if cfg.hand is not None:
        if args.hand_port is not None:
            cfg.hand.port = _int(args.hand_port, "--hand-port", 1, 65535)
        if args.hand_baudrate is not None:
            cfg.hand.baudrate = _int(args.hand_baudrate, "--hand-baudrate", 1, 10_000_000)
        if args.hand_device_id is not None:
            cfg.hand.device_id = _int(args.hand_device_id, "--hand-device-id", 1, 247)
    if args.camera:
        cfg.cameras = [CameraTarget(name=c.name or f"camera{i}", serial=c.serial) for i, c in enumerate(args.camera)]
    if args.timeout is not None:
        if not 0 < args.timeout <= 60:
            raise CheckConfigError(f"--timeout must be in (0, 60], got {args.timeout}")
        cfg.timeout_s = args.timeout
    if "robot" in args.skip:
        cfg.robot = None
    if "hand" in args.skip:
        cfg.hand = None
    if "cameras" in args.skip:
        cfg.cameras = []
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except CheckConfigError as exc:
        print(f"jala-hardware-check: {exc}", file=sys.stderr)
        return 2
    if cfg.robot is None and cfg.hand is None and not cfg.cameras:
        print("jala-hardware-check: nothing to check: give --config or --robot-ip / --hand-host / --hand-serial / "
              "--camera", file=sys.stderr)
        return 2
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the table says it; no retry chatter on stderr
    results = run_checks(cfg)
    missing = [r for r in results if not r.ok]
    if args.json:
        print(json.dumps({"ok": not missing, "results": [asdict(r) | {"status": r.status} for r in results]},
                         indent=2))
    else:
        print(format_table(results))
        print()
        print(f"{len(missing)} missing of {len(results)} checked" if missing else f"all {len(results)} OK")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
