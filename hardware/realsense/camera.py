"""RealSense L515 driver on pyrealsense2: colour (RGB8) + depth aligned to colour in metres, by serial number,
several cameras at once (one pipeline each), restart after a stall or an unplug, and playback of .bag files.

Reading
    ``read(timeout)`` returns the next frameset the SDK delivers as a ``CameraFrame``: colour HxWx3 uint8 RGB,
    depth HxW float32 metres aligned to colour (``rs.align``), the device timestamp in seconds, the frame number
    and the colour intrinsics of the running stream profile. ``received`` is ``time.monotonic()`` when the
    frame was taken from the SDK; ``frame_age()`` tells how stale the latest frame is.

Failures and restarts
    No frame within ``timeout`` (a stalled stream) or an unplug of the camera raises ``DeviceTimeout``. With
    ``reconnect`` on, the next ``read`` stops and restarts the pipeline (at most once per
    ``reconnect_interval_s``, the camera must be listed again for a live device). After ``reconnect_attempts``
    consecutive failed restarts ``read`` raises ``DeviceError`` until ``connect()`` is called again. A
    recording that has played to its end raises ``DeviceTimeout`` ("playback ended") and is not restarted.

Playback
    ``playback_real_time=False`` (default) delivers the recorded framesets in order without dropping any, as
    fast as they are read. One SDK behaviour remains (pyrealsense2 2.54.2): right after a (re)start the SDK's
    frame syncer sometimes drops the first frameset (it has not yet seen both streams), so a replay may begin
    at the recording's second frame.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np

from hardware.interfaces import Camera, CameraFrame, CameraIntrinsics, DeviceError, DeviceTimeout
from hardware.realsense.config import L515_DEFAULT_DEPTH_UNITS_M, RealSenseCameraConfig

log = logging.getLogger(__name__)


def _rs():
    """Import pyrealsense2 lazily so that a missing libusb shows up as a DeviceError, not an import crash."""
    try:
        import pyrealsense2 as rs
    except (ImportError, OSError) as exc:  # pragma: no cover - depends on the machine
        raise DeviceError(f"pyrealsense2 cannot be loaded ({exc}); it needs libusb-1.0-0 and Python <= 3.11 "
                          "(pyrealsense2==2.54.2.5684 is the last release with L515 support)") from exc
    return rs


@dataclass(frozen=True)
class RealSenseDeviceInfo:
    serial: str
    name: str
    product_line: str = ""
    firmware: str = ""
    usb_type: str = ""
    physical_port: str = ""


def _info(dev, field, rs) -> str:
    key = getattr(rs.camera_info, field)
    try:
        return dev.get_info(key) if dev.supports(key) else ""
    except RuntimeError:
        return ""


def device_info(dev) -> RealSenseDeviceInfo:
    rs = _rs()
    return RealSenseDeviceInfo(serial=_info(dev, "serial_number", rs), name=_info(dev, "name", rs),
                               product_line=_info(dev, "product_line", rs),
                               firmware=_info(dev, "firmware_version", rs),
                               usb_type=_info(dev, "usb_type_descriptor", rs),
                               physical_port=_info(dev, "physical_port", rs))


def list_devices(context=None) -> list[RealSenseDeviceInfo]:
    """The RealSense devices connected now (serial, name, firmware, USB type), via ``rs.context``."""
    rs = _rs()
    ctx = context if context is not None else rs.context()
    return [device_info(d) for d in ctx.query_devices()]


_MODEL_NAMES = {
    "none": "plumb_bob",  # no distortion: zero coefficients
    "brown_conrady": "plumb_bob",  # ROS camera_info name of the 5-coefficient Brown-Conrady model
    "modified_brown_conrady": "modified_brown_conrady",
    "inverse_brown_conrady": "inverse_brown_conrady",
    "ftheta": "ftheta",
    "kannala_brandt4": "equidistant",
}


def intrinsics_from_profile(profile) -> CameraIntrinsics:
    """CameraIntrinsics of a video stream profile (pixel units; model named as ROS camera_info does)."""
    i = profile.as_video_stream_profile().get_intrinsics()
    model = str(i.model).split(".")[-1]
    return CameraIntrinsics(width=int(i.width), height=int(i.height), fx=float(i.fx), fy=float(i.fy),
                            cx=float(i.ppx), cy=float(i.ppy), model=_MODEL_NAMES.get(model, model),
                            coeffs=tuple(float(c) for c in i.coeffs))


class RealSenseCamera(Camera):
    """One L515 (or one .bag recording of a camera) behind the ``Camera`` interface. See the module docstring."""

    def __init__(self, config: RealSenseCameraConfig | None = None, *, context=None):
        self.config = config if config is not None else RealSenseCameraConfig()
        self.name = self.config.name
        self._ctx = context  # an rs.context; created on connect when None
        self._pipe = None
        self._profile = None
        self._align = None
        self._lock = threading.RLock()
        self._connected = False
        self._removed = threading.Event()
        self._watching = False
        self._needs_restart = False
        self._restarts_without_frame = 0
        self._last_restart_attempt = -float("inf")
        self._first_frame_pending = True
        self.serial: str = self.config.serial
        self.device: RealSenseDeviceInfo | None = None
        self.intrinsics: CameraIntrinsics | None = None  # of the colour stream (= of aligned depth)
        self.depth_intrinsics: CameraIntrinsics | None = None  # of the depth stream itself
        self.depth_scale: float | None = None  # metres per depth unit in use
        self.restarts = 0  # successful pipeline restarts since connect()
        self.last_frame: CameraFrame | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        with self._lock:
            if self._connected and self._pipe is not None:
                return
            self._stop_pipeline()
            rs = _rs()
            if self._ctx is None:
                self._ctx = rs.context()
            if not self.config.is_playback:
                self.serial = self._resolve_serial()
                if not self._watching:
                    self._watch_removal()
                    self._watching = True
            self._restarts_without_frame = 0
            self._needs_restart = False
            self.restarts = 0
            self._start_pipeline()
            self._connected = True

    def disconnect(self) -> None:
        with self._lock:
            self._stop_pipeline()
            self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    def frame_age(self) -> float:
        """Seconds since the latest frame arrived (inf before the first one)."""
        if self.last_frame is None:
            return float("inf")
        return time.monotonic() - self.last_frame.received

    # ----------------------------------------------------------------------------------------------- read
    def read(self, timeout: float = 1.0) -> CameraFrame:
        if not (timeout > 0):
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        with self._lock:
            if not self._connected:
                raise DeviceError(f"camera {self._label()}: not connected (call connect() first)")
            deadline = time.monotonic() + timeout
            if self._removed.is_set():
                self._removed.clear()
                self._needs_restart = self.config.reconnect
                raise DeviceTimeout(f"camera {self._label()}: the camera was unplugged"
                                    + ("; will try to restart it" if self.config.reconnect else ""))
            if self._needs_restart:
                self._restart(deadline)
            return self._read_frame(deadline, timeout)

    def _read_frame(self, deadline: float, timeout: float) -> CameraFrame:
        if self._first_frame_pending:  # the first frame after a (re)start may take seconds on a real L515
            deadline = max(deadline, time.monotonic() + self.config.first_frame_timeout_s)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._stalled(timeout)
            try:
                ok, frames = self._pipe.try_wait_for_frames(max(1, int(remaining * 1000)))
            except RuntimeError as exc:  # the device went away under the pipeline
                self._needs_restart = self.config.reconnect and not self.config.is_playback
                raise DeviceTimeout(f"camera {self._label()}: frame wait failed: {exc}") from exc
            if not ok:
                return self._stalled(timeout)
            received = time.monotonic()
            color = frames.get_color_frame()
            depth = frames.get_depth_frame() if self.config.enable_depth else None
            if not color or (self.config.enable_depth and not depth):
                continue  # an incomplete frameset (e.g. while the streams start): wait for a full one
            if self.config.enable_depth and self.config.align_depth_to_color:
                aligned = self._align.process(frames)
                color, depth = aligned.get_color_frame(), aligned.get_depth_frame()
                if not color or not depth:
                    continue
            frame = self._to_camera_frame(color, depth, received)
            self._first_frame_pending = False
            self._restarts_without_frame = 0
            self.last_frame = frame
            return frame

    def _to_camera_frame(self, color, depth, received: float) -> CameraFrame:
        w, h = self.config.color_width, self.config.color_height
        rgb = np.asanyarray(color.get_data())
        if rgb.shape != (h, w, 3) or rgb.dtype != np.uint8:
            raise DeviceError(f"camera {self._label()}: colour frame has shape {rgb.shape} {rgb.dtype}, "
                              f"expected ({h}, {w}, 3) uint8 RGB")
        rgb = rgb.copy()  # the SDK recycles the frame buffer
        depth_m = None
        if depth is not None:
            raw = np.asanyarray(depth.get_data())
            depth_m = raw.astype(np.float32) * np.float32(self._depth_scale_for(depth))
        return CameraFrame(color=rgb, timestamp=color.get_timestamp() / 1000.0,
                           frame_number=int(color.get_frame_number()), intrinsics=self.intrinsics,
                           depth=depth_m, received=received)

    def _depth_scale_for(self, depth_frame) -> float:
        if self.depth_scale is None:
            units = float(depth_frame.as_depth_frame().get_units())
            if units > 0:
                self.depth_scale = units
            else:
                log.warning("camera %s: the device reports no depth units; using the L515 default %.5f m",
                            self._label(), L515_DEFAULT_DEPTH_UNITS_M)
                self.depth_scale = L515_DEFAULT_DEPTH_UNITS_M
        return self.depth_scale

    def _stalled(self, timeout: float) -> CameraFrame:
        rs = _rs()
        if self.config.is_playback:
            try:
                ended = (self._profile.get_device().as_playback().current_status()
                         == rs.playback_status.stopped)
            except RuntimeError:
                ended = False
            if ended:
                raise DeviceTimeout(f"camera {self._label()}: playback of {self.config.playback_file} ended")
        self._needs_restart = self.config.reconnect
        age = self.frame_age()
        raise DeviceTimeout(
            f"camera {self._label()}: no frame within {timeout:.3g} s (latest frame {age:.3g} s old)"
            + ("; will restart the pipeline" if self.config.reconnect else ""))

    # ----------------------------------------------------------------------------------- start / restart
    def _label(self) -> str:
        src = self.config.playback_file if self.config.is_playback else (self.serial or "any serial")
        return f"{self.name!r} ({src})"

    def _resolve_serial(self) -> str:
        devices = list_devices(self._ctx)
        serials = [d.serial for d in devices]
        if self.config.serial:
            if self.config.serial not in serials:
                raise DeviceError(f"camera {self.name!r}: no camera with serial {self.config.serial}; "
                                  f"connected: {serials}")
            return self.config.serial
        if len(serials) != 1:
            raise DeviceError(f"camera {self.name!r}: no serial configured and {len(serials)} cameras are "
                              f"connected ({serials}); set serial")
        return serials[0]

    def _watch_removal(self) -> None:
        me = weakref.ref(self)

        def on_change(event) -> None:
            cam = me()
            if cam is None or cam._pipe is None or cam._profile is None:
                return
            try:
                if event.was_removed(cam._profile.get_device()):
                    cam._removed.set()
            except RuntimeError:
                pass

        try:
            self._ctx.set_devices_changed_callback(on_change)
        except RuntimeError as exc:  # pragma: no cover - not all contexts allow it
            log.warning("camera %s: cannot watch for unplug events: %s", self._label(), exc)

    def _make_rs_config(self, rs):
        cfg = rs.config()
        if self.config.is_playback:
            path = self.config.playback_file
            if not os.path.isfile(path):
                raise DeviceError(f"camera {self._label()}: recording {path} does not exist")
            cfg.enable_device_from_file(path, repeat_playback=self.config.playback_repeat)
        else:
            cfg.enable_device(self.serial)
        c = self.config
        cfg.enable_stream(rs.stream.color, c.color_width, c.color_height, rs.format.rgb8, c.color_fps)
        if c.enable_depth:
            cfg.enable_stream(rs.stream.depth, c.depth_width, c.depth_height, rs.format.z16, c.depth_fps)
        return cfg

    def _start_pipeline(self) -> None:
        rs = _rs()
        c = self.config
        cfg = self._make_rs_config(rs)
        pipe = rs.pipeline(self._ctx)
        try:
            if c.is_playback:  # set the playback speed before it starts (set after start, early frames can drop)
                resolved = cfg.resolve(rs.pipeline_wrapper(pipe))
                resolved.get_device().as_playback().set_real_time(c.playback_real_time)
            profile = pipe.start(cfg)
        except RuntimeError as exc:
            wanted = f"colour {c.color_width}x{c.color_height}@{c.color_fps} RGB8" + (
                f", depth {c.depth_width}x{c.depth_height}@{c.depth_fps} Z16" if c.enable_depth else "")
            raise DeviceError(f"camera {self._label()}: cannot start streams ({wanted}): {exc}"
                              + self._available_streams_hint(rs)) from exc
        try:
            dev = profile.get_device()
            if c.is_playback and dev.as_playback().is_real_time() != c.playback_real_time:
                dev.as_playback().set_real_time(c.playback_real_time)
            info = device_info(dev)
            if c.is_playback and c.serial and info.serial != c.serial:
                raise DeviceError(f"camera {self._label()}: the recording is of camera {info.serial}, "
                                  f"not {c.serial}")
            self.device = info
            self.serial = info.serial or self.serial
            self.intrinsics = intrinsics_from_profile(profile.get_stream(rs.stream.color))
            self.depth_intrinsics = None
            self.depth_scale = c.depth_scale
            if c.enable_depth:
                self.depth_intrinsics = intrinsics_from_profile(profile.get_stream(rs.stream.depth))
                try:
                    device_units = float(dev.first_depth_sensor().get_depth_scale())
                except RuntimeError:  # no depth-units option (e.g. a software-device recording without one)
                    device_units = 0.0
                if device_units <= 0 and c.align_depth_to_color:
                    raise DeviceError(
                        f"camera {self._label()}: the device reports no depth units, so rs.align cannot align "
                        "depth to colour; record with a depth_units option or set align_depth_to_color=False")
                if self.depth_scale is None and device_units > 0:
                    self.depth_scale = device_units
            self._align = rs.align(rs.stream.color) if c.enable_depth and c.align_depth_to_color else None
        except BaseException:
            try:
                pipe.stop()
            except RuntimeError:
                pass
            raise
        self._pipe, self._profile = pipe, profile
        self._first_frame_pending = True
        log.info("camera %s started: %s", self._label(), dataclasses.asdict(self.device))

    def _available_streams_hint(self, rs) -> str:
        try:
            if self.config.is_playback:
                dev = self._ctx.load_device(self.config.playback_file)
            else:
                dev = next(d for d in self._ctx.query_devices()
                           if d.get_info(rs.camera_info.serial_number) == self.serial)
            streams = sorted({f"{p.stream_name()} {p.as_video_stream_profile().width()}x"
                              f"{p.as_video_stream_profile().height()}@{p.fps()} {str(p.format()).split('.')[-1]}"
                              for s in dev.query_sensors() for p in s.get_stream_profiles()
                              if p.is_video_stream_profile()})
            if self.config.is_playback:
                self._ctx.unload_device(self.config.playback_file)
            return f"; available: {streams}"
        except Exception:  # noqa: BLE001 - only a hint for the message
            return ""

    def _stop_pipeline(self) -> None:
        pipe, self._pipe, self._profile = self._pipe, None, None
        if pipe is not None:
            try:
                pipe.stop()
            except RuntimeError:
                pass

    def _restart(self, deadline: float) -> None:
        c = self.config
        if self._restarts_without_frame >= c.reconnect_attempts:
            raise DeviceError(f"camera {self._label()}: gave up after {self._restarts_without_frame} restart "
                              "attempts without a frame; call connect() again once the camera is back")
        wait = self._last_restart_attempt + c.reconnect_interval_s - time.monotonic()
        if wait > 0:
            if time.monotonic() + wait > deadline:
                raise DeviceTimeout(f"camera {self._label()}: stream lost; next restart attempt in {wait:.2g} s")
            time.sleep(wait)
        self._last_restart_attempt = time.monotonic()
        self._restarts_without_frame += 1
        attempt = f"restart attempt {self._restarts_without_frame}/{c.reconnect_attempts}"
        self._stop_pipeline()
        try:
            if not c.is_playback:
                serials = [d.serial for d in list_devices(self._ctx)]
                if self.serial not in serials:
                    raise DeviceError(f"no camera with serial {self.serial}; connected: {serials}")
            self._start_pipeline()
        except DeviceError as exc:
            raise DeviceTimeout(f"camera {self._label()}: {attempt} failed: {exc}") from exc
        self._needs_restart = False
        self.restarts += 1
        log.warning("camera %s: pipeline restarted (%s)", self._label(), attempt)
