"""WebXR hand tracking (Quest / Vision Pro browser) through the vuer client, as an ``OperatorSource``; only a paired
session can drive the robot.

The browser runs the vuer web client (served from this server when the optional ``vuer`` package is installed, see
requirements-teleop.txt, else loaded from https://vuer.ai); the client opens a websocket to this server and streams
``HAND_MOVE`` events once the server puts a ``Hands(stream=True)`` element into its scene. Vuer's own ``Vuer`` server
cannot check a token per websocket session (every connection is accepted and fed to the handlers; it also serves its
working directory and a ``/relay`` endpoint), so this module runs its own small aiohttp server that speaks the vuer
wire protocol (msgpack maps ``{etype, key, ts, value}``; server events ``{etype, ts, data}``) behind a pairing gate:

- it listens only on ``host`` (default ``127.0.0.1``; a wildcard only with ``allow_any_host=True``);
- at start it makes a random session token and prints the page URL that carries it
  (``https://HOST:PORT/?ws=wss://HOST:PORT/ws?token=TOKEN``, the ``ws`` value URL-encoded);
- a websocket is paired when its URL has ``?token=TOKEN`` (a wrong token is refused with HTTP 403 before the
  upgrade) or, without the query parameter, when its first message (within ``auth_timeout_s``) is
  ``{"etype": "AUTH", "value": TOKEN}`` (msgpack or JSON); any other session is closed (code 4401) and nothing it
  sent reaches ``read()``; at most ``max_sessions`` paired sessions at a time (more are refused, code 4409);
- TLS always, except on a loopback address when ``tls=False`` is asked for: with ``cert``/``key`` files, or a
  self-signed certificate made at start (its SHA-256 fingerprint is printed; the operator opens the page once and
  accepts it). WebXR needs a secure page anyway.
The page itself (vuer's public client files, ``/`` and ``/assets``) is served without the token; only the
websocket (``/ws``, or ``/`` with an upgrade) carries operator input and it is gated. Operator steps: open the
printed URL in the headset browser, accept the certificate (check the fingerprint), press "Enter VR/AR".

Mapping onto ``OperatorSample`` (the driving hand is ``hand``, right by default; the *other* hand gives the
clutch and the episode gestures):
- the vuer ``HAND_MOVE`` value is ``{left, right: 25*16 floats (column-major 4x4 per joint, in the XR reference
  space; vuer 0.1.6's client), leftState, rightState: {pinch, squeeze, tap, ...}}``; joints follow the WebXR
  ``XRHand`` order: wrist(0),
  thumb metacarpal/proximal/distal/tip (1-4), then for index, middle, ring, pinky: metacarpal, proximal,
  intermediate, distal, tip (5-9, 10-14, 15-19, 20-24);
- ``hand_keypoints`` (21, 3): the 25 joints minus the four finger metacarpals (5, 10, 15, 20) give the
  MediaPipe / MANO order: wrist, thumb CMC/MCP/IP/tip (= WebXR thumb metacarpal/proximal/distal/tip), then per
  finger MCP/PIP/DIP/tip (= proximal/intermediate/distal/tip); expressed in the wrist joint's frame (so the result
  is the same whether the client sends world-frame or wrist-relative matrices), metres;
- ``wrist_pose``: the wrist joint (or an older client's separate ``rightHand`` / ``leftHand`` wrist matrix),
  mapped into the robot base frame as ``calibration @ scale(T_xr_wrist) @ hand_offset`` (``scale`` multiplies the
  position; the default calibration turns WebXR's Y-up / -Z-forward frame into the robot's Z-up / X-forward one);
- ``clutch``: True while the other hand holds a thumb-index pinch (hysteresis: engage under 2 cm, release over
  4 cm; the client's ``pinch`` flag when that hand's joints are missing); ``clutch="always"`` to drive without it;
- ``buttons``: a thumb-middle pinch of the other hand: short (< ``long_press_s``) = START, or SAVE while an episode
  is running; long = DISCARD.
"""
from __future__ import annotations

import asyncio
import dataclasses
import importlib
import ipaddress
import json
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Callable

import numpy as np

from teleop import pairing
from teleop.operator import Button, OperatorSample

EXTRA_HINT = "pip install -r requirements.txt (aiohttp, msgpack, cryptography)"

# 25-joint hand layouts (WebXR XRHand, ARKit / avp-stream: the same order) -> 21 MediaPipe / MANO keypoints
XR25_TO_MP21 = np.array([0, 1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19, 21, 22, 23, 24])
XR_THUMB_TIP, XR_INDEX_TIP, XR_MIDDLE_TIP = 4, 9, 14

# WebXR (Y up, -Z forward, X right) -> robot base (Z up, X forward, Y left)
YUP_TO_ZUP = np.array([[0.0, 0.0, -1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _as_transform(m, name: str) -> np.ndarray:
    t = np.eye(4) if m is None else np.asarray(m, dtype=float)
    if t.shape != (4, 4):
        raise ValueError(f"{name} must be a (4, 4) transform, got shape {t.shape}")
    return t


class EpisodeGesture:
    """One held gesture / button -> episode buttons, emitted on release: a short press gives START (SAVE while an
    episode runs), a press held ``long_press_s`` or longer gives DISCARD."""

    def __init__(self, long_press_s: float = 1.5):
        self.long_press_s = float(long_press_s)
        self.recording = False
        self._down_since: float | None = None

    def update(self, pressed: bool, now: float) -> frozenset[Button]:
        if pressed:
            if self._down_since is None:
                self._down_since = now
            return frozenset()
        if self._down_since is None:
            return frozenset()
        held, self._down_since = now - self._down_since, None
        if held >= self.long_press_s:
            self.recording = False
            return frozenset({Button.DISCARD})
        self.recording = not self.recording
        return frozenset({Button.START if self.recording else Button.SAVE})


class HandMapper:
    """Hand-tracking joints -> ``OperatorSample`` (shared by the WebXR and the Vision Pro sources).

    ``calibration``: (4, 4) tracking frame -> robot base frame; ``scale``: factor on the tracked position (before
    the calibration); ``hand_offset``: (4, 4) human wrist frame -> the robot hand base frame (fixed, right-multiplied);
    ``clutch``: "other_pinch" (default) or "always"; pinch thresholds in metres."""

    def __init__(self, calibration=None, scale: float = 1.0, hand_offset=None, clutch: str = "other_pinch",
                 pinch_on_m: float = 0.02, pinch_off_m: float = 0.04, long_press_s: float = 1.5):
        if clutch not in ("other_pinch", "always"):
            raise ValueError(f"clutch must be 'other_pinch' or 'always', got {clutch!r}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.calibration = _as_transform(calibration, "calibration")
        self.scale = float(scale)
        self.hand_offset = _as_transform(hand_offset, "hand_offset")
        self.clutch_mode = clutch
        self.pinch_on_m, self.pinch_off_m = float(pinch_on_m), float(pinch_off_m)
        self.episode = EpisodeGesture(long_press_s)
        self._clutch = False
        self._episode_down = False

    def wrist_to_base(self, t_track_wrist: np.ndarray) -> np.ndarray:
        t = np.array(t_track_wrist, dtype=float)
        t[:3, 3] *= self.scale
        return self.calibration @ t @ self.hand_offset

    @staticmethod
    def keypoints21(joints: np.ndarray) -> np.ndarray:
        """(25, 4, 4) joint transforms (any common frame, joint 0 = wrist) -> (21, 3) positions in the wrist frame."""
        joints = np.asarray(joints, dtype=float)
        if joints.ndim != 3 or joints.shape[0] < 25 or joints.shape[1:] != (4, 4):
            raise ValueError(f"hand joints must be (25, 4, 4), got {joints.shape}")
        inv_wrist = np.linalg.inv(joints[0])
        pts = joints[XR25_TO_MP21, :, 3]  # (21, 4) homogeneous positions
        return (pts @ inv_wrist.T)[:, :3]

    def _hysteresis(self, current: bool, dist: float | None, flag: bool | None, on: float, off: float) -> bool:
        if dist is None:
            return bool(flag) if flag is not None else False
        return dist < off if current else dist < on

    def sample(self, stamp: float, joints=None, wrist=None, other_joints=None, other_pinch: bool | None = None,
               other_episode: bool | None = None) -> OperatorSample:
        """One reading: ``joints`` (25, 4, 4) of the driving hand (None when it is not tracked), ``wrist`` (4, 4) its
        wrist pose if given apart (else joint 0), ``other_joints`` (25, 4, 4) of the other hand; ``other_pinch`` /
        ``other_episode``: the device's own gesture flags, used only when ``other_joints`` is None."""
        keypoints = pose = None
        if joints is not None:
            joints = np.asarray(joints, dtype=float)
            keypoints = self.keypoints21(joints)
            if wrist is None:
                wrist = joints[0]
        if wrist is not None:
            pose = self.wrist_to_base(_as_transform(wrist, "wrist"))
        pinch_d = episode_d = None
        if other_joints is not None:
            o = np.asarray(other_joints, dtype=float)
            pinch_d = float(np.linalg.norm(o[XR_THUMB_TIP, :3, 3] - o[XR_INDEX_TIP, :3, 3]))
            episode_d = float(np.linalg.norm(o[XR_THUMB_TIP, :3, 3] - o[XR_MIDDLE_TIP, :3, 3]))
        self._clutch = self._hysteresis(self._clutch, pinch_d, other_pinch, self.pinch_on_m, self.pinch_off_m)
        self._episode_down = self._hysteresis(self._episode_down, episode_d, other_episode, self.pinch_on_m,
                                              self.pinch_off_m)
        buttons = self.episode.update(self._episode_down, stamp)
        clutch = True if self.clutch_mode == "always" else self._clutch
        # no driving hand tracked -> no target; the clutch is released so the robot holds
        if pose is None:
            clutch = False
        return OperatorSample(stamp=stamp, wrist_pose=pose, hand_keypoints=keypoints, clutch=clutch,
                              buttons=buttons)


class LatestSlot:
    """Thread-safe newest-sample holder: ``read()`` semantics of ``OperatorSource`` (None when nothing newer);
    buttons of samples that were overwritten before being read are carried into the next one returned."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sample: OperatorSample | None = None
        self._fresh = False
        self._pending: frozenset[Button] = frozenset()

    def put(self, sample: OperatorSample) -> None:
        with self._lock:
            self._pending = self._pending | sample.buttons
            self._sample, self._fresh = sample, True

    def take(self) -> OperatorSample | None:
        with self._lock:
            if not self._fresh or self._sample is None:
                return None
            s = dataclasses.replace(self._sample, buttons=self._pending)
            self._fresh, self._pending = False, frozenset()
            return s


def _xr_matrices(values, name: str) -> np.ndarray:
    if isinstance(values, (bytes, bytearray, memoryview)):  # a Float32Array sent as msgpack bin
        a = np.frombuffer(bytes(values), dtype="<f4").astype(float)
    else:
        a = np.asarray(values, dtype=float).reshape(-1)
    if a.size % 16 != 0 or a.size < 16:
        raise ValueError(f"{name}: expected a multiple of 16 floats, got {a.size}")
    return a.reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major (WebGL) -> row-major


def webxr_hand_sample(value: dict, stamp: float, mapper: HandMapper, hand: str = "right") -> OperatorSample:
    """A vuer ``HAND_MOVE`` event value -> ``OperatorSample`` (see the module docstring for the layout)."""
    if hand not in ("right", "left"):
        raise ValueError(f"hand must be 'right' or 'left', got {hand!r}")
    other = "left" if hand == "right" else "right"
    if not isinstance(value, dict):
        raise ValueError("HAND_MOVE value must be a map")
    joints = _xr_matrices(value[hand], hand)[:25] if value.get(hand) is not None else None
    other_joints = _xr_matrices(value[other], other)[:25] if value.get(other) is not None else None
    wrist_vals = value.get(f"{hand}Hand")  # older clients: the wrist matrix apart from the joints
    wrist = _xr_matrices(wrist_vals, f"{hand}Hand")[0] if wrist_vals is not None else None
    if joints is not None and joints.shape[0] < 25:
        raise ValueError(f"{hand}: expected 25 joints, got {joints.shape[0]}")
    if other_joints is not None and other_joints.shape[0] < 25:
        other_joints = None
    state = value.get(f"{other}State") or {}
    return mapper.sample(stamp, joints=joints, wrist=wrist, other_joints=other_joints,
                         other_pinch=state.get("pinch"), other_episode=state.get("squeeze"))


def _vuer_client_root() -> Path | None:
    """The vuer web client bundled in the optional ``vuer`` package (found without importing vuer)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("vuer")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "client_build"
    return root if (root / "index.html").is_file() else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebXRSource:
    """WebXR hand tracking over a paired, TLS websocket (see the module docstring). ``port=0`` picks a free port
    (``self.port`` is the one bound). ``announce`` receives the operator message (URL with the token, certificate
    fingerprint); print by default."""

    name = "webxr"

    def __init__(self, host: str = "127.0.0.1", port: int = 8012, *, allow_any_host: bool = False,
                 tls: bool = True, cert: str | Path | None = None, key: str | Path | None = None,
                 token: str | None = None, hand: str = "right", calibration=YUP_TO_ZUP, scale: float = 1.0,
                 hand_offset=None, clutch: str = "other_pinch", long_press_s: float = 1.5,
                 client_url: str | None = None, allowed_origins: list[str] | None = None,
                 auth_timeout_s: float = 3.0, max_sessions: int = 1, hands_fps: int = 60,
                 announce: Callable[[str], None] | None = print, clock: Callable[[], float] = time.monotonic):
        try:
            for mod in ("aiohttp", "msgpack"):
                importlib.import_module(mod)
        except ImportError as e:
            raise ImportError(f"the WebXR source needs aiohttp and msgpack: {EXTRA_HINT}") from e
        if hand not in ("right", "left"):
            raise ValueError(f"hand must be 'right' or 'left', got {hand!r}")
        self.host = pairing.check_bind_host(host, allow_any=allow_any_host)
        if not tls and not _is_loopback(self.host):
            raise ValueError("plain (non-TLS) WebXR serving is only allowed on a loopback address")
        if (cert is None) != (key is None):
            raise ValueError("give both cert and key, or neither (a self-signed certificate is made)")
        self.hand = hand
        self.mapper = HandMapper(calibration, scale, hand_offset, clutch, long_press_s=long_press_s)
        if token is not None and len(token) < 16:
            raise ValueError("a given session token must have at least 16 characters (default: a random one)")
        self.token = token or pairing.new_token()
        self.cert = self.key = None
        self.fingerprint = None
        if tls:
            if cert is None:
                cert, key = pairing.self_signed_cert(hosts=[self.host])
            self.cert, self.key = Path(cert), Path(key)
            self.fingerprint = pairing.cert_fingerprint(self.cert)
        self.client_root = _vuer_client_root()
        self.client_url = client_url
        self.allowed_origins = set(allowed_origins) if allowed_origins else None
        self.auth_timeout_s = float(auth_timeout_s)
        self.max_sessions = int(max_sessions)
        self.hands_fps = int(hands_fps)
        self.clock = clock
        self.refused = 0  # sessions refused so far (diagnostics, tests)
        self.events = 0  # HAND_MOVE events accepted from paired sessions
        self._paired: set = set()
        self._slot = LatestSlot()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.port = int(port)
        self.bound: list[tuple] = []
        self._thread = threading.Thread(target=self._serve, name="webxr-server", daemon=True)
        self._thread.start()
        self._started.wait(15.0)
        if self._start_error is not None:
            raise self._start_error
        if not self._started.is_set():
            raise RuntimeError("WebXR server did not start")
        if announce is not None:
            announce(self.operator_message())

    # ---- URLs shown to the operator -------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"

    def _host_for_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def ws_url(self) -> str:
        ws = "wss" if self.cert else "ws"
        return f"{ws}://{self._host_for_url()}:{self.port}/ws?token={self.token}"

    @property
    def url(self) -> str:
        """The page the operator opens in the headset browser (carries the token)."""
        base = self.client_url or (f"{self.scheme}://{self._host_for_url()}:{self.port}/" if self.client_root
                                   else "https://vuer.ai/")
        return f"{base}?ws={urllib.parse.quote(self.ws_url, safe='')}"

    def operator_message(self) -> str:
        lines = [f"[webxr] listening on {self.scheme}://{self._host_for_url()}:{self.port} only",
                 f"[webxr] session token: {self.token}", f"[webxr] open in the headset: {self.url}"]
        if self.fingerprint:
            lines.append(f"[webxr] TLS certificate SHA-256 {self.fingerprint} (accept it once at "
                         f"{self.scheme}://{self._host_for_url()}:{self.port}/)")
        return "\n".join(lines)

    # ---- OperatorSource ---------------------------------------------------------------------------------------
    def read(self) -> OperatorSample | None:
        return self._slot.take()

    def close(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                fut.result(10.0)
            except Exception:
                pass
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10.0)

    @property
    def paired_sessions(self) -> int:
        return len(self._paired)

    # ---- server -----------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._startup())
        except BaseException as e:  # bind errors etc. go back to the constructor
            self._start_error = e
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=2 ** 20)
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_get("/", self._index)
        if self.client_root is not None and (self.client_root / "assets").is_dir():
            app.router.add_static("/assets", self.client_root / "assets", follow_symlinks=False)
        ssl_ctx = pairing.server_ssl_context(self.cert, self.key) if self.cert else None
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ssl_ctx, reuse_address=False)
        await site.start()
        self.bound = [tuple(a) if isinstance(a, (tuple, list)) else (a,) for a in self._runner.addresses]
        if self.bound:
            self.port = int(self.bound[0][1])

    async def _shutdown(self) -> None:
        for ws in list(self._paired):
            try:
                await ws.close(code=1001, message=b"server closing")
            except Exception:
                pass
        if self._runner is not None:
            await self._runner.cleanup()

    async def _index(self, request):
        from aiohttp import web

        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._ws_handler(request)
        if self.client_root is not None:
            return web.FileResponse(self.client_root / "index.html")
        return web.Response(text="JALA teleop WebXR server: open the page URL printed at start (it carries the "
                                 "session token).\n")

    def _refuse_http(self, reason: str):
        from aiohttp import web

        self.refused += 1
        return web.HTTPForbidden(text=reason)

    async def _ws_handler(self, request):
        from aiohttp import WSMsgType, web

        if self.allowed_origins is not None:
            origin = request.headers.get("Origin")
            if origin is not None and origin not in self.allowed_origins:
                raise self._refuse_http("origin not allowed")
        presented = request.query.get("token")
        if presented is not None and not pairing.token_matches(presented, self.token):
            raise self._refuse_http("not paired: wrong session token")
        if presented is not None and len(self._paired) >= self.max_sessions:
            raise self._refuse_http("another session is already paired")
        ws = web.WebSocketResponse(heartbeat=5.0, max_msg_size=2 ** 20)
        await ws.prepare(request)
        if presented is None:  # the token must come as the first message
            try:
                msg = await ws.receive(timeout=self.auth_timeout_s)
            except asyncio.TimeoutError:
                msg = None
            token = self._auth_token(msg, WSMsgType)
            if not pairing.token_matches(token, self.token):
                self.refused += 1
                await ws.close(code=4401, message=b"not paired: present the session token")
                return ws
        if len(self._paired) >= self.max_sessions:
            self.refused += 1
            await ws.close(code=4409, message=b"another session is already paired")
            return ws
        self._paired.add(ws)
        try:
            await ws.send_bytes(self._hands_event())
            async for msg in ws:
                if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                    self._on_message(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._paired.discard(ws)
        return ws

    @staticmethod
    def _decode(data) -> dict | None:
        import msgpack

        try:
            obj = msgpack.unpackb(data, raw=False) if isinstance(data, (bytes, bytearray)) else json.loads(data)
        except Exception:
            return None
        return obj if isinstance(obj, dict) else None

    def _auth_token(self, msg, WSMsgType) -> str | None:
        if msg is None or msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            return None
        obj = self._decode(msg.data)
        if not obj:
            return None
        if obj.get("etype") == "AUTH":
            v = obj.get("value")
            return v.get("token") if isinstance(v, dict) else v
        return obj.get("token")

    def _hands_event(self) -> bytes:
        """The vuer ``UPSERT`` server event that puts a streaming ``Hands`` element into the client's scene."""
        import msgpack

        # what vuer 0.1.6 sends for ``session.upsert @ Hands(stream=True, fps=..., key="hands")`` (ts in ms, as
        # its send()); the client streams HAND_MOVE at ``fps`` once the operator enters the immersive (AR/VR) view
        hands = {"tag": "Hands", "key": "hands", "stream": True, "fps": self.hands_fps}
        event = {"etype": "UPSERT", "ts": int(time.time() * 1000), "data": {"nodes": [hands], "to": None}}
        return msgpack.packb(event, use_bin_type=True)

    def _on_message(self, data) -> None:
        obj = self._decode(data)
        if not obj or obj.get("etype") != "HAND_MOVE":
            return
        try:
            sample = webxr_hand_sample(obj.get("value"), self.clock(), self.mapper, self.hand)
        except (ValueError, KeyError, TypeError):
            return
        self.events += 1
        self._slot.put(sample)
