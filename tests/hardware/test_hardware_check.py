"""jala-hardware-check against real loopback endpoints: closed ports, listening TCP ports that answer junk or
nothing, a small libfranka Connect responder, franky-sim (the libfranka protocol in Python), and a small pymodbus
server holding the Inspire ANGLE_ACT registers."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from embodiment import INSPIRE_BAUDRATE
from hardware.check import main
from tests.helpers import ROOT, free_port, wait_until

ANGLES = [1000, 990, 500, 250, 7, 0]



def serve_in_thread(make_server):
    """Run a pymodbus server built by ``make_server()`` (inside the loop) in a thread; yields nothing, stops it."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict = {}

    async def serve() -> None:
        box["server"] = make_server()
        await box["server"].listen()
        ready.set()
        await box["server"].serving

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(5) and "error" not in box, box.get("error")
    yield
    asyncio.run_coroutine_threadsafe(box["server"].shutdown(), loop).result(5)
    thread.join(5)


def angle_device() -> SimDevice:
    return SimDevice(id=1, simdata=[SimData(1546, values=list(ANGLES), datatype=DataType.REGISTERS)])


@pytest.fixture
def hand_server():
    """A Modbus TCP server on loopback, device id 1, ANGLE_ACT (1546..1551) = ANGLES."""
    port = free_port()
    yield from (port for _ in serve_in_thread(lambda: ModbusTcpServer(angle_device(), address=("127.0.0.1", port))))


@pytest.fixture
def silent_listener():
    """A loopback TCP port that accepts connections (kernel backlog) but never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


class FakeFci:
    """A loopback TCP server on the robot port that answers each connection per ``mode``, one at a time:
    * "ok" / "incompatible": libfranka's packed Connect response (header + uint8 status + uint16 version);
    * "junk": some bytes that are no libfranka reply; "http": an HTTP error page; "close": closes at once.
    It records each request and whether the client closed the connection after the reply."""

    def __init__(self, mode: str, server_version: int = 10):
        self.mode, self.server_version = mode, server_version
        self.requests: list[bytes] = []
        self.client_closed: list[bool] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(3.0)
                try:
                    if self.mode == "close":
                        continue
                    request = b""
                    while len(request) < 16:
                        chunk = conn.recv(16 - len(request))
                        if not chunk:
                            break
                        request += chunk
                    self.requests.append(request)
                    if self.mode in ("ok", "incompatible"):
                        _, command_id, _ = struct.unpack_from("<III", request)
                        status = 0 if self.mode == "ok" else 1
                        conn.sendall(struct.pack("<III", 0, command_id, 15) +
                                     struct.pack("<BH", status, self.server_version))
                    elif self.mode == "junk":
                        conn.sendall(bytes(range(7, 47)))
                    elif self.mode == "http":
                        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    self.client_closed.append(conn.recv(64) == b"")  # the client closes after the reply
                except OSError:
                    self.client_closed.append(False)

    def close(self) -> None:
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def fake_fci(request):
    """FakeFci in mode "ok" (parametrise indirectly for another mode)."""
    server = FakeFci(getattr(request, "param", "ok"))
    yield server
    server.close()


def lines_of(out: str, device: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(device + " ")]


def test_nothing_connected_gives_missing_lines_with_reasons_and_exit_1(capsys):
    rc = main(["--robot-ip", "127.0.0.1", "--robot-port", str(free_port()), "--hand-host", "127.0.0.1",
               "--hand-port", str(free_port()), "--camera", "wrist=f0000bad", "--timeout", "1"])
    out = capsys.readouterr().out
    assert rc == 1
    robot = lines_of(out, "robot")[0]
    assert "MISSING" in robot and "robot 127.0.0.1: connection refused" in robot
    assert "is FCI enabled in Desk" in out
    hand = lines_of(out, "hand")[0]
    assert "MISSING" in hand and "connection refused" in hand
    cam = lines_of(out, "camera wrist")[0]
    assert "MISSING" in cam and "no camera with serial f0000bad; connected: [" in cam
    assert "3 missing" in out


def test_live_hand_and_libfranka_robot_are_ok_from_a_yaml_config(tmp_path, capsys, hand_server, fake_fci):
    cfg = tmp_path / "devices.yaml"
    cfg.write_text(f"""
hardware:
  timeout_s: 1.5
  robot: {{ip: 127.0.0.1, port: {fake_fci.port}}}
  hand: {{transport: tcp, host: 127.0.0.1, port: {hand_server}, device_id: 1}}
""")
    rc = main(["--config", str(cfg)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "OK" in lines_of(out, "robot")[0] and "libfranka Connect accepted" in lines_of(out, "robot")[0]
    hand = lines_of(out, "hand")[0]
    assert "OK" in hand and f"ANGLE_ACT {ANGLES}" in hand
    assert "all 2 OK" in out

    rc = main(["--config", str(cfg), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["ok"] is True
    assert {r["device"]: r["status"] for r in doc["results"]} == {"robot": "OK", "hand": "OK"}


def test_wrong_device_id_and_a_silent_port_are_missing_without_blocking_other_probes(
        capsys, hand_server, silent_listener, fake_fci):
    t0 = time.monotonic()
    rc = main(["--hand-host", "127.0.0.1", "--hand-port", str(hand_server), "--hand-device-id", "7",
               "--robot-ip", "127.0.0.1", "--robot-port", str(fake_fci.port), "--timeout", "1"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "MISSING" in lines_of(out, "hand")[0] and "device id 7" in out
    assert "OK" in lines_of(out, "robot")[0]

    # a port that accepts but never answers Modbus: the hand times out, the robot probe still reports
    rc = main(["--hand-host", "127.0.0.1", "--hand-port", str(silent_listener), "--robot-ip", "127.0.0.1",
               "--robot-port", str(free_port()), "--timeout", "1"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "MISSING" in lines_of(out, "hand")[0] and "no Modbus answer" in lines_of(out, "hand")[0]
    assert "MISSING" in lines_of(out, "robot")[0] and "connection refused" in lines_of(out, "robot")[0]
    assert time.monotonic() - t0 < 10


def test_missing_serial_port_for_rtu(capsys, tmp_path):
    rc = main(["--hand-serial", str(tmp_path / "ttyUSB9"), "--timeout", "0.5"])
    out = capsys.readouterr().out
    assert rc == 1 and "no such serial port" in out and "serial ports now" in out


@pytest.mark.parametrize("text, message", [
    ("robot: {ip: 127.0.0.1, prot: 1000}\n", "unknown keys in robot"),
    ("hand: {transport: can}\n", "hand: invalid InspireHandConfig: transport must be one of"),
    ("hand: {transport: tcp, prot: 6000}\n", "unknown keys in hand: ['prot']"),
    ("robot: {ip: 127.0.0.1, port: 70000}\n", "port must be an integer in 1..65535"),
    ("robot: {kind: ur5e, ip: 127.0.0.1}\n", "known arm kinds: ['franka_fr3'"),
    ("cameras: [{serial: f123, color_fps: 7}]\n", "is not an L515 colour profile"),
    ("cameras: [{name: wrist}]\n", "cameras[0] needs a serial"),
    ("timeout_s: 0\n", "timeout_s"),
])
def test_bad_config_is_exit_2_with_the_reason(tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    assert main(["--config", str(cfg)]) == 2
    assert message in capsys.readouterr().err


def test_nothing_configured_is_exit_2(capsys):
    assert main([]) == 2
    assert "nothing to check" in capsys.readouterr().err


def test_console_entry_exit_code():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "hardware.check", "--robot-ip", "127.0.0.1", "--robot-port",
                           str(free_port()), "--skip", "cameras", "--timeout", "1"],
                          capture_output=True, text=True, timeout=60, env=env,
                          cwd=str(ROOT))
    assert proc.returncode == 1, proc.stderr
    assert "MISSING" in proc.stdout and "connection refused" in proc.stdout


def test_franky_connect_failure_is_reported_not_raised(capsys, fake_fci):
    """--franky: the Connect handshake passes (a libfranka responder on another port), then franky/libfranka tries
    the real FCI connect to 127.0.0.1:1337, where nothing listens."""
    try:
        socket.create_connection(("127.0.0.1", 1337), timeout=0.5).close()
        pytest.skip("something listens on 127.0.0.1:1337")
    except OSError:
        pass
    rc = main(["--robot-ip", "127.0.0.1", "--robot-port", str(fake_fci.port), "--franky", "--timeout", "1"])
    out = capsys.readouterr().out
    assert rc == 1
    robot = lines_of(out, "robot")[0]
    assert "MISSING" in robot and "franky connect" in robot


def test_rtu_hand_on_a_virtual_serial_cable_is_ok(capsys):
    from hardware.inspire.virtual_serial import VirtualSerialPair

    with VirtualSerialPair().start() as cable:
        server = serve_in_thread(lambda: ModbusSerialServer(angle_device(), framer=FramerType.RTU,
                                                            port=cable.port_a, baudrate=INSPIRE_BAUDRATE))
        next(server)
        try:
            rc = main(["--hand-serial", cable.port_b, "--timeout", "1"])
        finally:
            next(server, None)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"ANGLE_ACT {ANGLES}" in lines_of(out, "hand")[0]


# ------------------------------------------------------------------------------------- libfranka handshake
def test_robot_is_ok_only_after_a_libfranka_connect_with_franky_sim(capsys):
    """franky-sim speaks libfranka's protocol: the handshake is accepted, and it leaves the server free for the
    next client (the probe closed its connection): a second probe and a full franky connect both succeed."""
    pytest.importorskip("franky_sim")
    from hardware.franka.sim_server import FrankySimProcess

    with FrankySimProcess(simulator="mujoco") as sim:
        rc = main(["--robot-ip", sim.hostname, "--timeout", "2"])
        out = capsys.readouterr().out
        assert rc == 0, out
        robot = lines_of(out, "robot")[0]
        assert "OK" in robot and "libfranka Connect accepted (protocol version 10" in robot and "FCI active" in robot
        if importlib.util.find_spec("franky") is not None:
            rc = main(["--robot-ip", sim.hostname, "--franky", "--timeout", "2"])
            out = capsys.readouterr().out
            assert rc == 0, out + sim.output()[-2000:]
            assert "franky connected" in lines_of(out, "robot")[0]
        rc = main(["--robot-ip", sim.hostname, "--timeout", "2"])
        assert rc == 0, capsys.readouterr().out


@pytest.mark.parametrize("fake_fci", ["junk", "http", "close"], indirect=True)
def test_a_listener_that_does_not_speak_libfranka_is_missing(capsys, fake_fci):
    t0 = time.monotonic()
    rc = main(["--robot-ip", "127.0.0.1", "--robot-port", str(fake_fci.port), "--timeout", "1"])
    out = capsys.readouterr().out
    assert rc == 1, out
    robot = lines_of(out, "robot")[0]
    assert "MISSING" in robot, out
    if fake_fci.mode == "close":
        assert "closed it without a libfranka reply" in robot
    else:
        assert f"port {fake_fci.port} answers but not with the libfranka protocol" in robot
    assert "hint:" in out
    assert time.monotonic() - t0 < 5


def test_a_silent_listener_is_missing_after_the_timeout(capsys, silent_listener):
    t0 = time.monotonic()
    rc = main(["--robot-ip", "127.0.0.1", "--robot-port", str(silent_listener), "--timeout", "0.5"])
    out = capsys.readouterr().out
    assert rc == 1, out
    robot = lines_of(out, "robot")[0]
    assert "MISSING" in robot and f"port {silent_listener} accepts connections but sent no libfranka reply" in robot
    assert "one at a time" in out  # the hint names the other-client case
    assert 0.4 < time.monotonic() - t0 < 5


@pytest.mark.parametrize("fake_fci", ["incompatible"], indirect=True)
def test_incompatible_version_names_the_robots_version(capsys, fake_fci):
    fake_fci.server_version = 9
    rc = main(["--robot-ip", "127.0.0.1", "--robot-port", str(fake_fci.port), "--timeout", "1"])
    out = capsys.readouterr().out
    assert rc == 1, out
    robot = lines_of(out, "robot")[0]
    assert "MISSING" in robot and "the robot speaks libfranka protocol version 9" in robot
    assert "speaks version 10" in robot and "system version" in out


def test_the_connect_request_is_libfrankas_and_the_connection_is_closed_after_the_reply(capsys, fake_fci):
    assert main(["--robot-ip", "127.0.0.1", "--robot-port", str(fake_fci.port), "--timeout", "1"]) == 0
    wait_until(lambda: fake_fci.client_closed, timeout=3.0)
    assert len(fake_fci.requests) == 1  # one connection, one Connect request, nothing else
    command, command_id, size, version, udp_port = struct.unpack("<IIIHH", fake_fci.requests[0])
    assert (command, command_id, size, version) == (0, 0, 16, 10)
    assert 0 < udp_port < 65536
    assert fake_fci.client_closed == [True]
