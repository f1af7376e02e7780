"""Network-facing and device operator sources without devices: the WebXR pairing gate (an unpaired client is refused
and its events never reach ``read()``), the bound interface, TLS with a generated certificate, and the payload ->
``OperatorSample`` mappings of WebXR (vuer HAND_MOVE), Vision Pro (avp-stream) and SpaceMouse (a fake
``pyspacemouse``)."""
from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys
import time
import types
import urllib.parse

import numpy as np
import pytest

from teleop import pairing
from teleop.operator import Button, OperatorSample
from teleop.sources import webxr
from teleop.sources.webxr import XR25_TO_MP21, YUP_TO_ZUP, HandMapper, WebXRSource, webxr_hand_sample

aiohttp = pytest.importorskip("aiohttp")
msgpack = pytest.importorskip("msgpack")


# ---- synthetic hands ----------------------------------------------------------------------------------------------
def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _transform(r: np.ndarray, t) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, t
    return m


LOCAL = np.array([[0.0, 0.0, 0.0]] + [[0.01 * (i % 5 + 1), 0.02 * (i // 5), -0.01 * i] for i in range(1, 25)])


def _hand(wrist: np.ndarray, local=LOCAL, pinch: bool = False, middle_pinch: bool = False) -> np.ndarray:
    """(25, 4, 4) joint transforms in the tracking frame for a hand whose joints sit at ``local`` (wrist frame)."""
    pts = np.array(local, dtype=float).copy()
    if pinch:
        pts[9] = pts[4] + [0.005, 0.0, 0.0]  # index tip at the thumb tip
    if middle_pinch:
        pts[14] = pts[4] + [0.0, 0.005, 0.0]  # middle tip at the thumb tip
    return np.stack([wrist @ _transform(np.eye(3), p) for p in pts])


def _colmajor(joints: np.ndarray) -> list[float]:
    return [float(v) for m in joints for v in m.T.reshape(-1)]


WRIST = _transform(_rot_z(0.3), [0.1, 1.2, -0.4])
LEFT_WRIST = _transform(np.eye(3), [-0.2, 1.1, -0.3])


def _hand_move(pinch=False, middle=False, right=WRIST) -> dict:
    return {"right": _colmajor(_hand(right)), "left": _colmajor(_hand(LEFT_WRIST, pinch=pinch, middle_pinch=middle)),
            "rightState": {"pinch": False}, "leftState": {"pinch": pinch}}


# ---- WebXR server ---------------------------------------------------------------------------------------------------
def _client_ssl(server: WebXRSource) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.cert))
    return ctx


@pytest.fixture
def server():
    messages: list[str] = []
    src = WebXRSource(host="127.0.0.1", port=0, announce=messages.append, auth_timeout_s=0.5, clutch="always")
    src.messages = messages
    yield src
    src.close()


def _ws_base(server: WebXRSource) -> str:
    return f"wss://127.0.0.1:{server.port}/ws"


async def _session(server: WebXRSource):
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_client_ssl(server)))


def _wait_sample(server: WebXRSource, timeout: float = 3.0) -> OperatorSample | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = server.read()
        if s is not None:
            return s
        time.sleep(0.01)
    return None


def test_bind_host_refuses_every_interface_unless_asked():
    assert pairing.check_bind_host(None) == "127.0.0.1"
    for wildcard in ("0.0.0.0", "::", ""):
        with pytest.raises(ValueError, match="every interface"):
            pairing.check_bind_host(wildcard)
    assert pairing.check_bind_host("0.0.0.0", allow_any=True) == "0.0.0.0"
    with pytest.raises(ValueError, match="every interface"):
        WebXRSource(host="0.0.0.0", port=0, announce=None)
    with pytest.raises(ValueError, match="loopback"):
        WebXRSource(host="192.0.2.77", port=0, tls=False, announce=None)


def test_token_compare():
    tok = pairing.new_token()
    assert len(tok) >= 20 and tok != pairing.new_token()
    assert pairing.token_matches(tok, tok)
    assert not pairing.token_matches(tok[:-1], tok)
    assert not pairing.token_matches(None, tok)
    assert not pairing.token_matches(b"x", tok)
    assert not pairing.token_matches("", tok)


@pytest.mark.safety
def test_unpaired_clients_are_refused_and_their_events_never_reach_read(server):
    event = msgpack.packb({"etype": "HAND_MOVE", "ts": 0, "value": _hand_move()})

    async def attempts():
        results = {}
        async with await _session(server) as http:
            # wrong token in the URL: refused before the websocket upgrade
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(_ws_base(server) + "?token=" + pairing.new_token())
            results["wrong_query"] = err.value.status
            # the same on the page path "/"
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(f"wss://127.0.0.1:{server.port}/?token=nope")
            results["wrong_query_root"] = err.value.status
            # no token: hand events straight away are not a pairing -> closed, events dropped
            ws = await http.ws_connect(_ws_base(server))
            await ws.send_bytes(event)
            await ws.send_bytes(event)
            msg = await ws.receive(timeout=3)
            results["no_token"] = (msg.type, ws.close_code)
            await ws.close()
            # wrong token as the first message
            ws = await http.ws_connect(_ws_base(server))
            await ws.send_str(json.dumps({"etype": "AUTH", "value": "not-the-token"}))
            await ws.send_bytes(event)
            await ws.receive(timeout=3)
            results["wrong_auth"] = ws.close_code
            await ws.close()
            # silent client: closed after the auth timeout
            ws = await http.ws_connect(_ws_base(server))
            await ws.receive(timeout=3)
            results["silent"] = ws.close_code
            await ws.close()
        return results

    r = asyncio.run(attempts())
    assert r["wrong_query"] == 403 and r["wrong_query_root"] == 403
    assert r["no_token"][0] in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert r["no_token"][1] == 4401 and r["wrong_auth"] == 4401 and r["silent"] == 4401
    time.sleep(0.1)
    assert server.read() is None
    assert server.events == 0 and server.refused == 5 and server.paired_sessions == 0


@pytest.mark.safety
def test_paired_client_gets_through_and_a_second_session_is_refused(server):
    assert server.token in urllib.parse.unquote(server.url)
    assert server.token in "\n".join(server.messages)

    async def paired():
        async with await _session(server) as http:
            # the websocket URL the page gets from the printed URL (its ``ws`` query value)
            ws_url = urllib.parse.parse_qs(urllib.parse.urlsplit(server.url).query)["ws"][0]
            assert ws_url == _ws_base(server) + "?token=" + server.token
            ws = await http.ws_connect(ws_url)
            first = await ws.receive(timeout=3)
            hello = msgpack.unpackb(first.data, raw=False)
            # while paired, another client (even with the token) is refused
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(_ws_base(server) + "?token=" + server.token)
            intruder = err.value.status
            await ws.send_bytes(msgpack.packb({"etype": "CAMERA_MOVE", "ts": 1, "value": {}}))
            await ws.send_bytes(msgpack.packb({"etype": "HAND_MOVE", "ts": 2, "value": _hand_move()}))
            sample = await asyncio.get_running_loop().run_in_executor(None, _wait_sample, server)
            await ws.close()
            # a client that pairs with the first message (no query parameter)
            await asyncio.sleep(0.1)
            ws = await http.ws_connect(_ws_base(server))
            await ws.send_bytes(msgpack.packb({"etype": "AUTH", "value": server.token}))
            second = msgpack.unpackb((await ws.receive(timeout=3)).data, raw=False)
            await ws.send_bytes(msgpack.packb({"etype": "HAND_MOVE", "ts": 3, "value": _hand_move()}))
            sample2 = await asyncio.get_running_loop().run_in_executor(None, _wait_sample, server)
            await ws.close()
        return hello, intruder, sample, second, sample2

    hello, intruder, sample, second, sample2 = asyncio.run(paired())
    for ev in (hello, second):
        assert ev["etype"] == "UPSERT"
        node = ev["data"]["nodes"][0]
        assert node["tag"] == "Hands" and node["stream"] is True
    assert intruder == 403
    assert sample is not None and sample2 is not None
    np.testing.assert_allclose(sample.hand_keypoints, LOCAL[XR25_TO_MP21], atol=1e-9)
    np.testing.assert_allclose(sample.wrist_pose, YUP_TO_ZUP @ WRIST, atol=1e-9)
    assert server.events == 2 and server.refused == 1


def test_server_binds_only_the_configured_interface(server):
    assert server.bound and all(addr[0] == "127.0.0.1" and addr[1] == server.port for addr in server.bound)
    others = [a for a in pairing.local_addresses() if not a.startswith("127.")]
    for addr in others:  # the same port on another interface of this machine: nothing listens there
        with pytest.raises(OSError):
            socket.create_connection((addr, server.port), timeout=1).close()
    with socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass


def test_tls_handshake_with_the_generated_certificate(server):
    assert server.cert is not None and server.url.startswith("https://")
    ctx = _client_ssl(server)  # verifies the chain and the 127.0.0.1 IP SAN
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = tls.recv(64)
    import hashlib

    fp = hashlib.sha256(der).hexdigest().upper()
    assert server.fingerprint.replace(":", "") == fp
    assert head.startswith(b"HTTP/1.1 200")
    # a client that does not trust the certificate fails the handshake
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw:
        with pytest.raises(ssl.SSLError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


def test_given_cert_and_key(tmp_path):
    cert, key = pairing.self_signed_cert(tmp_path, hosts=["127.0.0.1"])
    assert (key.stat().st_mode & 0o777) == 0o600
    src = WebXRSource(host="127.0.0.1", port=0, cert=cert, key=key, announce=None)
    try:
        assert src.fingerprint == pairing.cert_fingerprint(cert)
        with socket.create_connection(("127.0.0.1", src.port), timeout=2) as raw:
            with ssl.create_default_context(cafile=str(cert)).wrap_socket(raw, server_hostname="127.0.0.1"):
                pass
    finally:
        src.close()
    with pytest.raises(ValueError, match="both cert and key"):
        WebXRSource(host="127.0.0.1", port=0, cert=cert, announce=None)


def test_webxr_missing_library_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(ImportError, match="requirements.txt"):
        WebXRSource(host="127.0.0.1", port=0, announce=None)


# ---- WebXR mapping --------------------------------------------------------------------------------------------------
def test_webxr_payload_mapping_keypoints_pose_scale_offset():
    offset = _transform(_rot_z(np.pi / 2), [0.0, 0.0, 0.05])
    calib = _transform(np.eye(3), [0.5, 0.0, 0.0]) @ YUP_TO_ZUP
    mapper = HandMapper(calibration=calib, scale=0.5, hand_offset=offset)
    s = webxr_hand_sample(_hand_move(pinch=True), 7.0, mapper)
    scaled = WRIST.copy()
    scaled[:3, 3] *= 0.5
    np.testing.assert_allclose(s.wrist_pose, calib @ scaled @ offset, atol=1e-9)
    assert s.hand_keypoints.shape == (21, 3)
    np.testing.assert_allclose(s.hand_keypoints, LOCAL[XR25_TO_MP21], atol=1e-9)
    assert s.stamp == 7.0 and s.clutch is True and s.buttons == frozenset()
    # the default calibration turns WebXR's Y-up into the robot's Z-up: "up" in XR is +z in the base frame
    up = HandMapper(calibration=YUP_TO_ZUP).wrist_to_base(_transform(np.eye(3), [0.0, 1.0, 0.0]))
    np.testing.assert_allclose(up[:3, 3], [0.0, 0.0, 1.0], atol=1e-12)
    fwd = HandMapper(calibration=YUP_TO_ZUP).wrist_to_base(_transform(np.eye(3), [0.0, 0.0, -1.0]))
    np.testing.assert_allclose(fwd[:3, 3], [1.0, 0.0, 0.0], atol=1e-12)
    # wrist-relative joints (joint 0 = identity) give the same keypoints
    rel = {"right": _colmajor(_hand(np.eye(4))), "rightHand": WRIST.T.reshape(-1).tolist()}
    s2 = webxr_hand_sample(rel, 8.0, HandMapper(calibration=YUP_TO_ZUP))
    np.testing.assert_allclose(s2.hand_keypoints, LOCAL[XR25_TO_MP21], atol=1e-9)
    np.testing.assert_allclose(s2.wrist_pose, YUP_TO_ZUP @ WRIST, atol=1e-9)


def test_webxr_clutch_and_episode_gestures():
    mapper = HandMapper(calibration=YUP_TO_ZUP, long_press_s=1.0)
    assert webxr_hand_sample(_hand_move(pinch=False), 0.0, mapper).clutch is False
    assert webxr_hand_sample(_hand_move(pinch=True), 0.1, mapper).clutch is True
    # no driving hand -> no target, clutch released
    s = webxr_hand_sample({"left": _hand_move(pinch=True)["left"]}, 0.2, mapper)
    assert s.wrist_pose is None and s.hand_keypoints is None and s.clutch is False
    # other hand not tracked -> its pinch flag decides
    only_right = {"right": _colmajor(_hand(WRIST)), "leftState": {"pinch": True}}
    assert webxr_hand_sample(only_right, 0.3, mapper).clutch is True
    assert webxr_hand_sample({**only_right, "leftState": {}}, 0.35, mapper).clutch is False
    # thumb-middle pinch: short -> START, short again -> SAVE, long -> DISCARD (on release)
    seq = [(1.0, True), (1.2, False), (2.0, True), (2.3, False), (3.0, True), (4.5, False)]
    got = [webxr_hand_sample(_hand_move(middle=m), t, mapper).buttons for t, m in seq]
    assert got == [frozenset(), {Button.START}, frozenset(), {Button.SAVE}, frozenset(), {Button.DISCARD}]


def test_webxr_bad_payloads_raise_value_error():
    mapper = HandMapper()
    with pytest.raises(ValueError):
        webxr_hand_sample({"right": [0.0] * 17}, 0.0, mapper)
    with pytest.raises(ValueError):
        webxr_hand_sample({"right": [0.0] * 32}, 0.0, mapper)
    with pytest.raises(ValueError):
        webxr_hand_sample([1, 2], 0.0, mapper)
    # a Float32Array that arrived as msgpack bin is read as little-endian float32
    raw = np.asarray(_colmajor(_hand(WRIST)), dtype="<f4").tobytes()
    s = webxr_hand_sample({"right": raw}, 0.0, HandMapper(calibration=YUP_TO_ZUP))
    np.testing.assert_allclose(s.hand_keypoints, LOCAL[XR25_TO_MP21], atol=1e-5)


def test_latest_slot_keeps_buttons_of_overwritten_samples():
    slot = webxr.LatestSlot()
    assert slot.take() is None
    slot.put(OperatorSample(stamp=1.0, buttons=frozenset({Button.START})))
    slot.put(OperatorSample(stamp=2.0))
    s = slot.take()
    assert s.stamp == 2.0 and s.buttons == {Button.START}
    assert slot.take() is None


# ---- Vision Pro (avp-stream) ----------------------------------------------------------------------------------------
class _FakeStreamer:
    def __init__(self, ip):
        self.ip, self.data, self.cleaned = ip, None, False

    def get_latest(self):
        return self.data

    def cleanup(self):
        self.cleaned = True


def _avp_data(pinch_d=0.1, middle=False, wrist=WRIST):
    return {"right_wrist": wrist[None], "right_fingers": _hand(np.eye(4)),
            "left_fingers": _hand(np.eye(4), middle_pinch=middle), "left_pinch_distance": pinch_d,
            "right_pinch_distance": 0.1, "head": np.eye(4)[None]}


def test_avp_mapping_and_freshness():
    from teleop.sources.avp import AVPSource

    made = []
    src = AVPSource("192.0.2.10", scale=2.0, streamer_factory=lambda ip: made.append(_FakeStreamer(ip)) or made[-1],
                    clock=lambda: 5.0, wait_s=5.0)
    fake = made[0]
    assert fake.ip == "192.0.2.10"
    assert src.read() is None  # nothing yet
    d = _avp_data()
    d["left_fingers"] = None  # other hand's skeleton missing: its pinch distance decides
    fake.data = d
    s = src.read()
    scaled = WRIST.copy()
    scaled[:3, 3] *= 2.0
    np.testing.assert_allclose(s.wrist_pose, scaled, atol=1e-9)  # default calibration: identity (already Z-up)
    np.testing.assert_allclose(s.hand_keypoints, LOCAL[XR25_TO_MP21], atol=1e-9)
    assert s.clutch is False and s.stamp == 5.0
    assert src.read() is None  # the same tracking data again -> nothing newer
    fake.data = {**d, "left_pinch_distance": 0.005}
    assert src.read().clutch is True
    # 27-joint skeletons (forearm appended) use the first 25
    fingers27 = np.concatenate([_hand(np.eye(4)), np.stack([np.eye(4)] * 2)])
    fake.data = {**d, "right_fingers": fingers27, "right_wrist": np.eye(4)[None]}
    np.testing.assert_allclose(src.read().hand_keypoints, LOCAL[XR25_TO_MP21], atol=1e-9)
    src.close()
    assert fake.cleaned


def test_avp_episode_gesture_from_the_other_hand():
    from teleop.sources.avp import avp_hand_sample

    mapper = HandMapper(long_press_s=1.0)
    assert avp_hand_sample(_avp_data(middle=True), 0.0, mapper).buttons == frozenset()
    assert avp_hand_sample(_avp_data(middle=False), 0.2, mapper).buttons == {Button.START}


def test_avp_missing_library_is_one_clear_line(monkeypatch):
    from teleop.sources.avp import AVPSource

    monkeypatch.setitem(sys.modules, "avp_stream", None)
    with pytest.raises(ImportError, match="requirements-teleop.txt") as err:
        AVPSource("192.0.2.10")
    assert "avp-stream" in str(err.value) and "\n" not in str(err.value)
    for bad in ("", "ABC-1234", "visionpro.local"):  # only an IP address: no room code (internet relay)
        with pytest.raises(ValueError, match="IP address"):
            AVPSource(bad, streamer_factory=_FakeStreamer)


def test_avp_connects_in_the_background():
    import threading

    from teleop.sources.avp import AVPSource

    release = threading.Event()
    made = []

    def slow_factory(ip):  # VisionProStreamer's constructor blocks until the app streams
        release.wait(5)
        made.append(_FakeStreamer(ip))
        made[-1].data = _avp_data()
        return made[-1]

    src = AVPSource("192.0.2.10", streamer_factory=slow_factory)
    assert not src.connected and src.read() is None
    release.set()
    assert src.wait_connected(5) and src.read() is not None
    src.close()

    def failing(ip):
        raise ConnectionError("unreachable")

    src = AVPSource("192.0.2.10", streamer_factory=failing)
    src._ready.wait(5)
    with pytest.raises(RuntimeError, match="unreachable"):
        src.read()
    with pytest.raises(TimeoutError):
        AVPSource("192.0.2.10", streamer_factory=lambda ip: threading.Event().wait(2), wait_s=0.2)


# ---- SpaceMouse (fake pyspacemouse) ---------------------------------------------------------------------------------
class _State:
    def __init__(self, x=0.0, y=0.0, z=0.0, roll=0.0, pitch=0.0, yaw=0.0, buttons=(0, 0)):
        self.x, self.y, self.z, self.roll, self.pitch, self.yaw = x, y, z, roll, pitch, yaw
        self.buttons = list(buttons)


class _FakeDevice:
    def __init__(self):
        self.state, self.closed = _State(), False

    def read(self):
        return self.state

    def close(self):
        self.closed = True


@pytest.fixture
def fake_psm(monkeypatch):
    mod = types.ModuleType("pyspacemouse")
    mod.device = _FakeDevice()
    mod.opened_with = None

    def _open(**kw):
        mod.opened_with = kw
        return mod.device

    mod.open = _open
    monkeypatch.setitem(sys.modules, "pyspacemouse", mod)
    return mod


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_spacemouse_state_to_sample(fake_psm):
    from teleop.sources.spacemouse import DEFAULT_PRESETS, SpaceMouseSource

    clock = _Clock()
    start = _transform(np.eye(3), [0.4, 0.0, 0.3])
    src = SpaceMouseSource(start_pose=start, linear_speed=0.1, angular_speed=1.0, deadband=0.0, clock=clock,
                           long_press_s=1.0)
    dev = fake_psm.device
    s0 = src.read()
    np.testing.assert_allclose(s0.wrist_pose, start)
    np.testing.assert_allclose(s0.hand_targets, [1000.0] * 6)
    assert s0.clutch is True and s0.buttons == frozenset()
    # full +x for 0.05 s -> +5 mm; yaw 0.5 for 0.05 s -> 0.025 rad about base z
    dev.state = _State(x=1.0, yaw=0.5)
    clock.t = 0.05
    s1 = src.read()
    np.testing.assert_allclose(s1.wrist_pose[:3, 3], [0.405, 0.0, 0.3], atol=1e-12)
    np.testing.assert_allclose(s1.wrist_pose[:3, :3], _rot_z(0.025), atol=1e-12)
    # a long gap is capped (max_dt) so a stalled loop does not jump the target
    clock.t = 5.0
    dev.state = _State(z=-1.0)
    np.testing.assert_allclose(src.read().wrist_pose[:3, 3], [0.405, 0.0, 0.29], atol=1e-12)
    # left button: close to the preset, press again: open
    dev.state = _State(buttons=(1, 0))
    clock.t = 5.1
    s = src.read()
    assert s.buttons == {Button.HAND_CLOSE}
    np.testing.assert_allclose(s.hand_targets, DEFAULT_PRESETS["power"])
    clock.t = 5.2
    assert src.read().buttons == frozenset()  # held: no repeat
    dev.state = _State(buttons=(0, 0))
    clock.t = 5.3
    src.read()
    dev.state = _State(buttons=(1, 0))
    clock.t = 5.4
    s = src.read()
    assert s.buttons == {Button.HAND_OPEN}
    np.testing.assert_allclose(s.hand_targets, [1000.0] * 6)
    # right button (episode mode): short press -> START on release, long -> DISCARD
    for t, b, want in [(6.0, (0, 1), set()), (6.2, (0, 0), {Button.START}), (7.0, (0, 1), set()),
                       (8.5, (0, 0), {Button.DISCARD})]:
        dev.state, clock.t = _State(buttons=b), t
        assert src.read().buttons == want
    src.close()
    assert dev.closed


def test_spacemouse_right_button_as_clutch(fake_psm):
    from teleop.sources.spacemouse import SpaceMouseSource

    clock = _Clock()
    src = SpaceMouseSource(right_mode="clutch", deadband=0.1, clock=clock, device="SpaceMouse Compact")
    assert fake_psm.opened_with == {"device": "SpaceMouse Compact"}
    pose0 = src.read().wrist_pose
    fake_psm.device.state = _State(x=1.0, y=0.05)  # y inside the deadband
    clock.t = 0.05
    s = src.read()
    assert s.clutch is False
    np.testing.assert_allclose(s.wrist_pose, pose0)  # released clutch: the target does not move
    fake_psm.device.state = _State(x=1.0, y=0.05, buttons=(0, 1))
    clock.t = 0.1
    s = src.read()
    assert s.clutch is True and Button.START not in s.buttons
    assert s.wrist_pose[0, 3] > pose0[0, 3] and s.wrist_pose[1, 3] == pose0[1, 3]


def test_spacemouse_missing_library_is_one_clear_line(monkeypatch):
    from teleop.sources.spacemouse import SpaceMouseSource

    monkeypatch.setitem(sys.modules, "pyspacemouse", None)
    with pytest.raises(ImportError, match="libhidapi-hidraw0") as err:
        SpaceMouseSource()
    assert "pyspacemouse" in str(err.value) and "\n" not in str(err.value)


def test_avp_with_the_real_library_against_a_fake_app():
    """Only with the optional extra installed (requirements-teleop.txt): avp-stream's real gRPC client against a
    stand-in for the Vision Pro app on 127.0.0.1:12345 (the app's fixed port)."""
    pytest.importorskip("avp_stream", exc_type=ImportError)
    from concurrent import futures

    import grpc
    from avp_stream.grpc_msg import handtracking_pb2, handtracking_pb2_grpc

    from teleop.sources.avp import AVPSource

    def fill(msg, m):
        for r in range(4):
            for c in range(4):
                setattr(msg, f"m{r}{c}", float(m[r, c]))

    wrist = _transform(_rot_z(0.2), [0.3, -0.1, 1.0])
    update = handtracking_pb2.HandUpdate()
    fill(update.Head, np.eye(4))
    for hand, w in ((update.right_hand, wrist), (update.left_hand, np.eye(4))):
        fill(hand.wristMatrix, w)
        for j in _hand(np.eye(4)):
            fill(hand.skeleton.jointMatrices.add(), j)

    class App(handtracking_pb2_grpc.HandTrackingServiceServicer):
        def StreamHandUpdates(self, request, context):
            end = time.monotonic() + 10
            while context.is_active() and time.monotonic() < end:
                yield update
                time.sleep(0.01)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handtracking_pb2_grpc.add_HandTrackingServiceServicer_to_server(App(), server)
    if server.add_insecure_port("127.0.0.1:12345") == 0:
        pytest.skip("port 12345 busy")
    server.start()
    try:
        src = AVPSource("127.0.0.1", wait_s=15, clutch="always")
        s = None
        for _ in range(100):
            s = src.read() or s
            if s is not None:
                break
            time.sleep(0.02)
        assert s is not None
        np.testing.assert_allclose(s.hand_keypoints, LOCAL[XR25_TO_MP21], atol=1e-5)
        axis = np.asarray(src._streamer.axis_transform, dtype=float).reshape(4, 4)
        np.testing.assert_allclose(s.wrist_pose, axis @ wrist, atol=1e-5)
        src.close()
    finally:
        server.stop(0)
