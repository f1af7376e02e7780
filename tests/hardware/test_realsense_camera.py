"""RealSenseCamera through the real pyrealsense2 SDK: recordings of an L515-like ``rs.software_device`` are made
in a tmp dir with ``rs.recorder`` and played back through the driver (no camera needed)."""
from __future__ import annotations

import logging
import os
import shutil
import time

import numpy as np
import pytest


from hardware.interfaces import Camera, DeviceError, DeviceTimeout
from hardware.realsense import (ConfigError, RealSenseCamera, RealSenseCameraConfig,
                                RealSenseDeviceInfo, list_devices)
from hardware.realsense.synthetic import write_synthetic_bag

CW, CH, DW, DH = 960, 540, 640, 480  # L515 colour 960x540@30, depth 640x480@30


def playback_config(path, **kw) -> RealSenseCameraConfig:
    base = dict(name="cam", playback_file=str(path), color_width=CW, color_height=CH, depth_width=DW,
                depth_height=DH, first_frame_timeout_s=2.0, reconnect_interval_s=0.0)
    base.update(kw)
    return RealSenseCameraConfig(**base)


def read_all(cam: RealSenseCamera, timeout: float = 0.5):
    frames = []
    with pytest.raises(DeviceTimeout) as end:
        for _ in range(1000):
            frames.append(cam.read(timeout))
    return frames, end.value


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_synthetic_bag(tmp_path_factory.mktemp("rs") / "cam_a.bag", serial="f1000001", n_frames=12,
                               color_size=(CW, CH), depth_size=(DW, DH), depth_units=0.00025)


def test_playback_delivers_every_frame_in_order_with_content_timestamps_and_intrinsics(bag):
    cam = RealSenseCamera(playback_config(bag.path, serial="f1000001"))
    assert isinstance(cam, Camera)
    with cam:
        assert cam.device.serial == "f1000001"
        frames, end = read_all(cam)
        assert "ended" in str(end)
        with pytest.raises(DeviceTimeout, match="ended"):  # an ended recording is not restarted
            cam.read(0.2)
        assert cam.restarts == 0

    nums = [f.frame_number for f in frames]
    # every frameset in order; the SDK's syncer may drop the very first one right after start (see camera.py)
    assert nums[0] <= 1 and nums == list(range(nums[0], bag.n_frames))
    expected_cols = (np.arange(CW) // 4) % 256
    for f in frames:
        assert f.color.shape == (CH, CW, 3) and f.color.dtype == np.uint8
        n = f.frame_number
        assert np.all(f.color[..., 0] == n % 256) and np.all(f.color[..., 1] == n // 256)
        assert np.array_equal(f.color[CH // 2, :, 2], expected_cols)  # row-major, not transposed/flipped
        assert f.timestamp == pytest.approx(bag.timestamps_ms[n] / 1000.0, abs=1e-6)  # device clock, seconds
    assert np.all(np.diff([f.received for f in frames]) >= 0)
    assert np.all(np.diff([f.timestamp for f in frames]) == pytest.approx(1 / 30, abs=1e-6))

    ci = frames[0].intrinsics
    exp = bag.color_intrinsics
    assert (ci.width, ci.height) == (CW, CH)
    assert (ci.fx, ci.fy, ci.cx, ci.cy) == pytest.approx((exp.fx, exp.fy, exp.cx, exp.cy), rel=1e-6)
    assert ci.coeffs == pytest.approx(exp.coeffs, abs=1e-7) and ci.model == "plumb_bob"
    di = cam.depth_intrinsics
    assert (di.width, di.height, di.fx, di.cx) == (DW, DH, pytest.approx(bag.depth_intrinsics.fx),
                                                   pytest.approx(bag.depth_intrinsics.cx))


def test_depth_is_aligned_to_colour_in_metres_and_from_the_same_frame(bag):
    with RealSenseCamera(playback_config(bag.path)) as cam:
        frames = [cam.read(1.0) for _ in range(5)]
    assert cam.depth_scale == pytest.approx(0.00025)
    ci, di = bag.color_intrinsics, bag.depth_intrinsics
    for f in frames:
        n = f.frame_number
        assert f.depth.shape == (CH, CW) and f.depth.dtype == np.float32  # colour geometry, not 640x480
        raw = np.rint(f.depth / 0.00025).astype(np.int64)
        valid = raw > 0
        assert valid.mean() > 0.9
        # every depth value carries this frame's number in its low digits: depth and colour belong together
        assert np.all((raw[valid] - bag.depth_base) % bag.depth_step == n % bag.depth_step)
        # pinhole mapping of the ramp (identity extrinsics): colour column u sees depth column x_d
        for v in (CH // 2 - 120, CH // 2, CH // 2 + 120):
            for u in range(200, 760, 37):
                x_d = (u - ci.cx) / ci.fx * di.fx + di.cx
                expected_m = (bag.depth_base + bag.depth_step * x_d + n % bag.depth_step) * 0.00025
                assert abs(f.depth[v, u] - expected_m) <= bag.depth_step * 0.00025 * 1.5, (u, v)


def test_colour_only_and_depth_scale_when_the_recording_has_no_depth_units(tmp_path, caplog):
    rec = write_synthetic_bag(tmp_path / "nounits.bag", n_frames=3, depth_units=None)
    with pytest.raises(DeviceError, match="no depth units, so rs.align cannot align"):
        RealSenseCamera(playback_config(rec.path)).connect()

    unaligned = dict(align_depth_to_color=False)
    with RealSenseCamera(playback_config(rec.path, depth_scale=0.001, **unaligned)) as cam:
        f = cam.read(1.0)
    raw = rec.depth_base + rec.depth_step * np.arange(DW, dtype=np.float32) + f.frame_number % rec.depth_step
    assert f.depth.shape == (DH, DW)  # the depth camera's own geometry
    assert np.allclose(f.depth, raw[None, :] * 0.001, rtol=1e-6)

    with caplog.at_level(logging.WARNING), RealSenseCamera(playback_config(rec.path, **unaligned)) as cam:
        f = cam.read(1.0)
    raw = rec.depth_base + rec.depth_step * np.arange(DW, dtype=np.float32) + f.frame_number % rec.depth_step
    assert cam.depth_scale == pytest.approx(0.00025)  # L515 default when neither device nor frames know it
    assert "no depth units" in caplog.text
    assert np.allclose(f.depth, raw[None, :] * 0.00025, rtol=1e-6)

    with RealSenseCamera(playback_config(rec.path, enable_depth=False)) as cam:
        f = cam.read(1.0)
    assert f.depth is None and f.color.shape == (CH, CW, 3) and f.frame_number <= 1
    assert np.all(f.color[..., 0] == f.frame_number)


@pytest.mark.parametrize("kw, field", [
    (dict(color_width=1024, color_height=768), "colour profile 1024x768@30"),
    (dict(color_fps=90), "colour profile 1280x720@90"),
    (dict(depth_width=1280, depth_height=720), "depth profile 1280x720@30"),
    (dict(depth_fps=60), "depth profile 1024x768@60"),
    (dict(depth_scale=-1.0), "depth_scale"),
    (dict(reconnect_attempts=-1), "reconnect_attempts"),
])
def test_unsupported_profile_or_bad_values_raise_config_error(kw, field):
    with pytest.raises(ConfigError, match="invalid RealSenseCameraConfig") as err:
        RealSenseCameraConfig(**kw)
    assert field in str(err.value)
    if "profile" in field:
        listed = "1280x720@30/60" if field.startswith("colour") else "1024x768@30, 640x480@30"
        assert "supported:" in str(err.value) and listed in str(err.value)
    # a depth profile does not matter when depth is off
    RealSenseCameraConfig(enable_depth=False, depth_width=1, depth_height=1)
    with pytest.raises(ConfigError, match="unknown camera config keys"):
        RealSenseCameraConfig.from_dict({"serial": "f1", "colour_width": 960})
    assert RealSenseCameraConfig.from_dict({"serial": 12345678, "color_width": 960,
                                            "color_height": 540}).serial == "12345678"


def test_recording_without_the_requested_profile_or_serial_is_a_clear_device_error(bag):
    cam = RealSenseCamera(playback_config(bag.path, color_width=1280, color_height=720))
    with pytest.raises(DeviceError, match=r"cannot start streams .*1280x720.*available: .*960x540"):
        cam.connect()
    cam = RealSenseCamera(playback_config(bag.path, serial="f9999999"))
    with pytest.raises(DeviceError, match="recording is of camera f1000001, not f9999999"):
        cam.connect()
    with pytest.raises(DeviceError, match="does not exist"):
        RealSenseCamera(playback_config(bag.path + ".missing")).connect()
    with pytest.raises(DeviceError, match="not connected"):
        RealSenseCamera(playback_config(bag.path)).read(0.1)


def test_two_cameras_at_once(tmp_path, bag):
    rec_b = write_synthetic_bag(tmp_path / "cam_b.bag", serial="f2000002", n_frames=7, first_timestamp_ms=5000.0)
    cam_a = RealSenseCamera(playback_config(bag.path, name="wrist", serial="f1000001"))
    cam_b = RealSenseCamera(playback_config(rec_b.path, name="scene", serial="f2000002"))
    got = {cam_a: [], cam_b: []}
    with cam_a, cam_b:
        live = [cam_a, cam_b]
        while live:  # interleaved reads until both recordings have ended
            for cam in list(live):
                try:
                    got[cam].append(cam.read(1.0))
                except DeviceTimeout as exc:
                    assert "ended" in str(exc) and cam.name in str(exc)
                    live.remove(cam)
    for cam, rec in ((cam_a, bag), (cam_b, rec_b)):
        frames = got[cam]
        nums = [f.frame_number for f in frames]
        assert nums[0] <= 1 and nums == list(range(nums[0], rec.n_frames))
        assert [f.timestamp for f in frames] == pytest.approx([t / 1000 for t in rec.timestamps_ms[nums[0]:]])
        assert all(np.all(f.color[..., 0] == f.frame_number) for f in frames)
    assert cam_a.device.serial == "f1000001" and cam_b.device.serial == "f2000002"


@pytest.fixture(scope="module")
def stall_bag(tmp_path_factory):
    # frames 0..3, then 1.5 s of wall-clock silence, then 4..7: played in real time, the stream stalls
    return write_synthetic_bag(tmp_path_factory.mktemp("rs") / "stall.bag", serial="f3000003", n_frames=8,
                               pause_after=3, pause_s=1.5)


def read_until_stall(cam, timeout=0.5):
    before = []
    with pytest.raises(DeviceTimeout) as stall:
        for _ in range(50):
            before.append(cam.read(timeout))
    return before, stall.value


def test_stalled_stream_raises_timeout_and_the_pipeline_is_restarted(stall_bag):
    cam = RealSenseCamera(playback_config(stall_bag.path, playback_real_time=True, reconnect=True))
    with cam:
        before, stall = read_until_stall(cam)
        assert "no frame within 0.5 s" in str(stall) and "will restart" in str(stall)
        nums = [f.frame_number for f in before]
        assert nums and nums == sorted(nums) and nums[-1] <= 3
        assert cam.frame_age() >= 0.5  # staleness is visible from CameraFrame.received
        assert time.monotonic() - cam.last_frame.received >= 0.5
        after = cam.read(2.0)  # restarts the pipeline: the recording plays again from its start
        assert cam.restarts == 1
        assert after.frame_number <= 3 and after.received > before[-1].received


def test_without_reconnect_the_stream_resumes_where_it_stalled(stall_bag):
    with RealSenseCamera(playback_config(stall_bag.path, playback_real_time=True, reconnect=False)) as cam:
        before, stall = read_until_stall(cam)
        assert "no frame within" in str(stall) and "will restart" not in str(stall)
        after = cam.read(3.0)
        assert cam.restarts == 0 and after.frame_number > before[-1].frame_number


def test_restart_gives_up_after_the_configured_attempts_and_connect_recovers(tmp_path, stall_bag):
    path = tmp_path / "copy.bag"
    shutil.copy(stall_bag.path, path)
    other = write_synthetic_bag(tmp_path / "other.bag", n_frames=2, depth_size=None)  # colour only
    cam = RealSenseCamera(playback_config(path, playback_real_time=True, reconnect_attempts=2))
    with cam:
        read_until_stall(cam)
        # the "camera" comes back without a depth stream: restarts cannot start the configured streams.
        # (Replaced atomically: deleting a .bag under a running playback can crash the SDK when it stops.)
        shutil.copy(other.path, tmp_path / "tmp.bag")
        os.replace(tmp_path / "tmp.bag", path)
        for attempt in (1, 2):
            with pytest.raises(DeviceTimeout, match=f"restart attempt {attempt}/2 failed.*cannot start streams"):
                cam.read(0.5)
        with pytest.raises(DeviceError, match="gave up after 2 restart attempts") as gave_up:
            cam.read(0.5)
        assert not isinstance(gave_up.value, DeviceTimeout)
        shutil.copy(stall_bag.path, tmp_path / "tmp.bag")
        os.replace(tmp_path / "tmp.bag", path)  # back again
        cam.connect()
        assert cam.read(2.0).frame_number <= 3  # replayed from the start (real time may drop a frame)


def test_live_camera_by_serial_reports_what_is_connected():
    devices = list_devices()
    assert all(isinstance(d, RealSenseDeviceInfo) and d.serial for d in devices)
    serials = [d.serial for d in devices]
    cam = RealSenseCamera(RealSenseCameraConfig(serial="f0000bad", name="wrist"))
    with pytest.raises(DeviceError, match=r"no camera with serial f0000bad; connected: " + repr(serials)
                       .replace("[", r"\[").replace("]", r"\]")):
        cam.connect()
