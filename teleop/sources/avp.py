"""Apple Vision Pro hand tracking through ``avp-stream`` (the "Tracking Streamer" app), as an ``OperatorSource``.

The Vision Pro app is the gRPC *server*; this side is a client that connects only to the configured headset
IP address (``ip``; avp-stream's room codes, which go through an internet signaling relay, are refused). Pairing
and transport security on that link are the app's (the app shows its address and streams to the client that
connects; avp-stream's gRPC channel is plain, so keep the headset on the lab network). Nothing here listens:
avp-stream's HTTP info server (0.0.0.0:8888, WebRTC discovery for its video streaming, unused here) is switched
off, and the SIGINT / SIGTERM handlers it installs at import are put back to the caller's.

``avp-stream`` is an optional extra (requirements-teleop.txt, installed with ``--no-deps``): its own requirements
pull ``opencv-python`` (the project keeps one OpenCV per venv, ``opencv-python-headless``) and the ``argparse``
backport. It is imported only when a streamer is made; missing -> one ImportError line naming the extra.

Mapping onto ``OperatorSample`` (``TrackingData`` from ``VisionProStreamer.get_latest()``, dict access):
- ``{hand}_wrist`` (1, 4, 4): wrist pose in the app's Z-up frame (avp-stream already turned ARKit's Y-up into Z-up)
  -> ``wrist_pose = calibration @ scale(T_wrist) @ hand_offset`` (default calibration: identity);
- ``{hand}_fingers`` (25, 4, 4): ARKit hand skeleton relative to the wrist, order wrist(0), thumbKnuckle,
  thumbIntermediateBase, thumbIntermediateTip, thumbTip (1-4), then for index, middle, ring, little: metacarpal,
  knuckle, intermediateBase, intermediateTip, tip (5-9, 10-14, 15-19, 20-24) -- the WebXR layout, so the same
  25 -> 21 map (drop the four finger metacarpals 5, 10, 15, 20) gives MediaPipe / MANO order:
  wrist, thumb CMC/MCP/IP/tip = thumbKnuckle/IntermediateBase/IntermediateTip/Tip, finger MCP/PIP/DIP/tip =
  knuckle/intermediateBase/intermediateTip/tip; positions in the wrist frame, metres. (Newer apps send 27
  joints, forearm last; only the first 25 are used.)
- ``clutch``: the other hand's thumb-index pinch held (hysteresis 2 cm / 4 cm; ``{other}_pinch_distance`` when its
  fingers are missing); ``clutch="always"`` to drive without it;
- ``buttons``: the other hand's thumb-middle pinch: short = START (SAVE while an episode runs), long = DISCARD.
"""
from __future__ import annotations

import hashlib
import ipaddress
import signal
import threading
import time
from typing import Callable

import numpy as np

from teleop.operator import OperatorSample
from teleop.sources.webxr import HandMapper

EXTRA_HINT = ("the Vision Pro source needs the optional 'avp-stream' extra: "
              "pip install --no-deps -r requirements-teleop.txt")


def _check_ip(ip: str) -> str:
    """The headset's IP address. avp-stream treats anything else as a room code and goes through an internet
    signaling relay; that is not allowed here (the operator link stays on the lab network)."""
    try:
        return str(ipaddress.ip_address(str(ip).strip()))
    except ValueError:
        raise ValueError(f"AVPSource needs the Vision Pro's IP address (shown by the app on the headset), got "
                         f"{ip!r}; room codes (internet relay) are not used") from None


def _import_streamer_class():
    """``avp_stream.VisionProStreamer``, imported without letting avp-stream take over SIGINT / SIGTERM (it
    installs its own handlers at import) and with its HTTP info server (0.0.0.0:8888, WebRTC discovery for video,
    unused here) switched off, so this side opens no listening socket."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        from avp_stream import VisionProStreamer
    except ImportError as e:
        raise ImportError(f"{EXTRA_HINT} ({e})") from e
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in saved.items():
                if handler is not None:
                    signal.signal(sig, handler)

    class _GrpcOnlyStreamer(VisionProStreamer):
        def _start_info_server(self, port=8888):
            self.info_server = None

    return _GrpcOnlyStreamer


def _get(data, key):
    try:
        v = data[key]
    except (KeyError, IndexError, TypeError):
        return None
    return None if v is None else v


def avp_hand_sample(data, stamp: float, mapper: HandMapper, hand: str = "right") -> OperatorSample:
    """One avp-stream tracking sample (``TrackingData`` or a plain dict with the same keys) -> ``OperatorSample``."""
    if hand not in ("right", "left"):
        raise ValueError(f"hand must be 'right' or 'left', got {hand!r}")
    other = "left" if hand == "right" else "right"
    wrist = _get(data, f"{hand}_wrist")
    wrist = None if wrist is None else np.asarray(wrist, dtype=float).reshape(-1, 4, 4)[0]
    fingers = _get(data, f"{hand}_fingers")
    fingers = None if fingers is None else np.asarray(fingers, dtype=float)[:25]
    other_fingers = _get(data, f"{other}_fingers")
    other_fingers = None if other_fingers is None else np.asarray(other_fingers, dtype=float)[:25]
    if other_fingers is not None and other_fingers.shape != (25, 4, 4):
        other_fingers = None
    pinch_d = _get(data, f"{other}_pinch_distance")
    other_pinch = None if pinch_d is None else float(pinch_d) < mapper.pinch_on_m
    return mapper.sample(stamp, joints=fingers, wrist=wrist, other_joints=other_fingers, other_pinch=other_pinch)


class AVPSource:
    """Vision Pro hand tracking: connects (gRPC client) to the app at ``ip``, the headset's IP address.

    ``VisionProStreamer``'s constructor blocks until the app streams, so the streamer is made in a background
    thread: ``read()`` returns None until it is connected (the session's deadman holds the robot meanwhile) and
    raises the connection error if making it failed; ``wait_s`` > 0 waits that long in the constructor (TimeoutError
    when nothing came). ``streamer_factory(ip)`` makes the streamer (default: avp-stream, gRPC only; tests pass a
    fake). ``read()`` also returns None while no new tracking data arrived since the previous sample."""

    name = "avp"

    def __init__(self, ip: str, *, hand: str = "right", calibration=None, scale: float = 1.0, hand_offset=None,
                 clutch: str = "other_pinch", long_press_s: float = 1.5, wait_s: float = 0.0,
                 streamer_factory: Callable[[str], object] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if hand not in ("right", "left"):
            raise ValueError(f"hand must be 'right' or 'left', got {hand!r}")
        self.ip = _check_ip(ip)
        self.hand, self.clock = hand, clock
        self.mapper = HandMapper(calibration, scale, hand_offset, clutch, long_press_s=long_press_s)
        if streamer_factory is None:
            cls = _import_streamer_class()  # here, in the caller's (main) thread: the signal handlers
            streamer_factory = lambda addr: cls(ip=addr, record=False, ht_backend="grpc")  # noqa: E731
        self._streamer = None
        self._error: BaseException | None = None
        self._closed = False
        self._ready = threading.Event()
        self._last_key: bytes | None = None

        def connect():
            try:
                st = streamer_factory(self.ip)
            except BaseException as e:  # noqa: BLE001 - handed to read()
                self._error = e
            else:
                if self._closed:
                    _close_streamer(st)
                else:
                    self._streamer = st
            finally:
                self._ready.set()

        threading.Thread(target=connect, name=f"avp-connect-{self.ip}", daemon=True).start()
        if wait_s > 0 and not self.wait_connected(wait_s):
            raise TimeoutError(f"no hand tracking from the Vision Pro at {self.ip} within {wait_s} s "
                               "(is the Tracking Streamer app running and showing this address?)")

    @property
    def connected(self) -> bool:
        return self._streamer is not None

    def wait_connected(self, timeout: float) -> bool:
        self._ready.wait(timeout)
        if self._error is not None:
            raise RuntimeError(f"Vision Pro connection to {self.ip} failed: {self._error}") from self._error
        return self.connected

    def _fingerprint(self, data) -> bytes | None:
        h = hashlib.blake2b(digest_size=16)
        seen = False
        for k in (f"{self.hand}_wrist", f"{self.hand}_fingers", "left_pinch_distance", "right_pinch_distance"):
            v = _get(data, k)
            if v is not None:
                h.update(np.ascontiguousarray(np.asarray(v, dtype=float)).tobytes())
                seen = True
        return h.digest() if seen else None

    def read(self) -> OperatorSample | None:
        if self._error is not None:
            raise RuntimeError(f"Vision Pro connection to {self.ip} failed: {self._error}") from self._error
        streamer = self._streamer
        if streamer is None:
            return None
        data = streamer.get_latest()
        if data is None:
            return None
        key = self._fingerprint(data)
        if key is None or key == self._last_key:
            return None
        self._last_key = key
        return avp_hand_sample(data, self.clock(), self.mapper, self.hand)

    def close(self) -> None:
        self._closed = True
        st, self._streamer = self._streamer, None
        if st is not None:
            _close_streamer(st)


def _close_streamer(st) -> None:
    for meth in ("cleanup", "stop", "close"):
        fn = getattr(st, meth, None)
        if callable(fn):
            try:
                fn()
            except Exception:
                pass
            return
