"""Synthetic L515-like recordings (.bag) made with the real SDK: an ``rs.software_device`` with a colour and a
depth software sensor, recorded by ``rs.recorder``. For tests and demos without a camera; replay them with
``RealSenseCamera(RealSenseCameraConfig(playback_file=...))``.

Known content, so a reader can check what it got
* colour pixel (x, y) of frame n = (n % 256, n // 256 % 256, x // 4 % 256)  (R, G encode the frame number)
* depth raw (Z16) pixel (x, y) of frame n = ``depth_base + depth_step * x + n % depth_step``: a ramp along x,
  with the frame number (mod depth_step) in the low digits, so aligned depth can be matched to its frame.
* timestamps ``first_timestamp_ms + n * 1000 / fps`` (hardware clock), frame numbers 0..n_frames-1.

SDK quirks handled here (pyrealsense2 2.54.2): software frames carry no depth units, so the depth sensor gets
a read-only ``depth_units`` option (it is recorded and read back as the depth scale); when a colour frame is
the first frame recorded it is lost on playback, so each depth frame is sent before its colour frame.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hardware.interfaces import CameraIntrinsics

L515_COLOR_HFOV_DEG = 70.0  # approximate fields of view of the L515 (datasheet: RGB 70x43, depth 70x55)
L515_DEPTH_HFOV_DEG = 70.0
# Brown-Conrady coefficients of the order of a real L515 colour camera, kept small so that the pinhole
# approximation holds near the image centre.
L515_LIKE_COLOR_COEFFS = (0.012, -0.021, 0.0004, -0.0003, 0.006)


def l515_like_intrinsics(width: int, height: int, *, hfov_deg: float, coeffs: Sequence[float] = (0.0,) * 5,
                         principal_offset: tuple[float, float] = (0.0, 0.0)) -> CameraIntrinsics:
    fx = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return CameraIntrinsics(width=width, height=height, fx=float(fx), fy=float(fx * 1.0005),
                            cx=(width - 1) / 2.0 + principal_offset[0], cy=(height - 1) / 2.0 + principal_offset[1],
                            model="plumb_bob", coeffs=tuple(float(c) for c in coeffs))


def synthetic_color(frame_number: int, width: int, height: int) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = frame_number % 256
    img[..., 1] = (frame_number // 256) % 256
    img[..., 2] = ((np.arange(width) // 4) % 256).astype(np.uint8)[None, :]
    return img


def synthetic_depth_raw(frame_number: int, width: int, height: int, *, base: int = 2000, step: int = 4) -> np.ndarray:
    row = base + step * np.arange(width, dtype=np.int64) + frame_number % step
    if row.max() > 65535:
        raise ValueError("depth ramp exceeds the Z16 range; lower base/step")
    return np.broadcast_to(row.astype(np.uint16), (height, width)).copy()


@dataclass(frozen=True)
class SyntheticRecording:
    path: str
    serial: str
    n_frames: int
    fps: int
    color_intrinsics: CameraIntrinsics
    depth_intrinsics: CameraIntrinsics | None
    depth_units: float | None  # recorded depth scale (None: none recorded)
    depth_base: int
    depth_step: int
    timestamps_ms: tuple[float, ...]


def _rs_intrinsics(rs, ci: CameraIntrinsics, distorted: bool):
    i = rs.intrinsics()
    i.width, i.height = ci.width, ci.height
    i.fx, i.fy, i.ppx, i.ppy = ci.fx, ci.fy, ci.cx, ci.cy
    i.model = rs.distortion.brown_conrady if distorted else rs.distortion.none
    i.coeffs = list(ci.coeffs)
    return i


def write_synthetic_bag(path: str | os.PathLike, *, serial: str = "f0000001", n_frames: int = 10,
                        color_size: tuple[int, int] = (960, 540), depth_size: tuple[int, int] | None = (640, 480),
                        fps: int = 30, depth_units: float | None = 0.00025, first_timestamp_ms: float = 1000.0,
                        color_coeffs: Sequence[float] = L515_LIKE_COLOR_COEFFS,
                        depth_base: int = 2000, depth_step: int = 4,
                        pause_after: int | None = None, pause_s: float = 0.0,
                        paced: bool | None = None) -> SyntheticRecording:
    """Record ``n_frames`` synthetic frames of a software L515 to ``path`` (.bag). ``pause_after=k`` with
    ``pause_s`` leaves a gap of that many wall-clock seconds after frame k (a stall on real-time playback).
    ``paced`` records one frame per frame period of wall-clock time, as a camera delivers them (the bag's
    timeline is the recorder's clock); it defaults to on when there is a pause, because a real-time playback of
    an unpaced burst hands the whole burst to the SDK's syncer at once, which can hold the burst's last
    frameset until the next frame arrives, i.e. after the pause.
    ``depth_size=None`` records colour only; ``depth_units=None`` records no depth-units option."""
    import pyrealsense2 as rs

    path = os.fspath(path)
    if os.path.exists(path):
        os.remove(path)
    cw, ch = color_size
    ci = l515_like_intrinsics(cw, ch, hfov_deg=L515_COLOR_HFOV_DEG, coeffs=color_coeffs, principal_offset=(1.5, -2.0))
    di = None
    dev = rs.software_device()
    dev.register_info(rs.camera_info.serial_number, serial)
    dev.register_info(rs.camera_info.product_line, "L500")
    sensors, profiles = [], []
    if depth_size is not None:
        dw, dh = depth_size
        di = l515_like_intrinsics(dw, dh, hfov_deg=L515_DEPTH_HFOV_DEG, principal_offset=(-0.5, 0.75))
        dsens = dev.add_sensor("Depth")
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid = rs.stream.depth, 0, 0
        vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = dw, dh, fps, 2, rs.format.z16
        vs.intrinsics = _rs_intrinsics(rs, di, distorted=False)
        dprof = dsens.add_video_stream(vs)
        if depth_units is not None:
            dsens.add_read_only_option(rs.option.depth_units, float(depth_units))
        sensors.append(dsens)
        profiles.append(dprof)
    csens = dev.add_sensor("RGB Camera")
    cs = rs.video_stream()
    cs.type, cs.index, cs.uid = rs.stream.color, 0, 1
    cs.width, cs.height, cs.fps, cs.bpp, cs.fmt = cw, ch, fps, 3, rs.format.rgb8
    cs.intrinsics = _rs_intrinsics(rs, ci, distorted=True)
    cprof = csens.add_video_stream(cs)
    sensors.append(csens)
    profiles.append(cprof)
    if depth_size is not None:
        ex = rs.extrinsics()
        ex.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        ex.translation = [0.0, 0.0, 0.0]
        profiles[0].register_extrinsics_to(cprof, ex)

    recorder = rs.recorder(path, dev)
    for s, p in zip(sensors, profiles):
        s.open(p)
        s.start(lambda f: None)
    if paced is None:
        paced = pause_after is not None and pause_s > 0
    period = 1.0 / fps
    stamps = []
    next_frame = time.monotonic()
    for n in range(n_frames):
        if paced:
            time.sleep(max(0.0, next_frame - time.monotonic()))
            next_frame += period
        ts = first_timestamp_ms + n * 1000.0 / fps
        stamps.append(ts)
        if depth_size is not None:
            f = rs.software_video_frame()
            f.pixels = synthetic_depth_raw(n, depth_size[0], depth_size[1], base=depth_base, step=depth_step)
            f.bpp, f.stride = 2, depth_size[0] * 2
            f.timestamp, f.domain, f.frame_number = ts, rs.timestamp_domain.hardware_clock, n
            f.profile = profiles[0].as_video_stream_profile()
            sensors[0].on_video_frame(f)
        f = rs.software_video_frame()
        f.pixels = synthetic_color(n, cw, ch)
        f.bpp, f.stride = 3, cw * 3
        f.timestamp, f.domain, f.frame_number = ts, rs.timestamp_domain.hardware_clock, n
        f.profile = cprof.as_video_stream_profile()
        csens.on_video_frame(f)
        if pause_after is not None and n == pause_after and pause_s > 0:
            time.sleep(pause_s)
            next_frame = time.monotonic() + period
    for s in sensors:
        s.stop()
        s.close()
    recorder.pause()
    del recorder  # flushes and closes the bag
    return SyntheticRecording(path=path, serial=serial, n_frames=n_frames, fps=fps, color_intrinsics=ci,
                              depth_intrinsics=di, depth_units=depth_units if depth_size is not None else None,
                              depth_base=depth_base, depth_step=depth_step, timestamps_ms=tuple(stamps))
