"""Configuration of the RealSense L515 camera driver, validated against the L515 stream profile table."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hardware.config_checks import ConfigProblems, is_int, is_number


class ConfigError(ValueError):
    """A camera configuration the L515 (or this driver) cannot run. The message says which field and why."""


# Stream profiles of the L515 that this driver accepts: (width, height) -> allowed fps.
# Sources: librealsense 2.54 L515 profiles and the L515 datasheet. Colour is delivered as RGB8 (the SDK converts
# from the sensor's YUYV); depth as Z16. Extend these tables only with profiles verified on a real unit.
L515_COLOR_PROFILES: dict[tuple[int, int], tuple[int, ...]] = {
    (1920, 1080): (30,),
    (1280, 720): (30, 60),
    (960, 540): (30,),
}
L515_DEPTH_PROFILES: dict[tuple[int, int], tuple[int, ...]] = {
    (1024, 768): (30,),
    (640, 480): (30,),
    (320, 240): (30,),
}
L515_DEFAULT_DEPTH_UNITS_M = 0.00025  # metres per Z16 unit on the L515 (0.25 mm)


def _profile_table(table: Mapping[tuple[int, int], tuple[int, ...]]) -> str:
    return ", ".join(f"{w}x{h}@{'/'.join(str(f) for f in fps)}" for (w, h), fps in table.items())


@dataclass
class RealSenseCameraConfig:
    """One L515 (live, by serial) or one recording of it (``playback_file``, a .bag). Validated on construction."""

    serial: str = ""  # serial number; "" = the only connected camera (an error when several are connected)
    name: str = "camera"  # name used in messages and by the runtime (e.g. "wrist", "scene")
    color_width: int = 1280
    color_height: int = 720
    color_fps: int = 30
    enable_depth: bool = True
    depth_width: int = 1024
    depth_height: int = 768
    depth_fps: int = 30
    align_depth_to_color: bool = True  # False: CameraFrame.depth stays in the depth camera's own geometry
    depth_scale: float | None = None  # metres per depth unit; None = read it from the device / recording
    first_frame_timeout_s: float = 5.0  # the first frame after (re)starting may take a while on the L515
    reconnect: bool = True  # restart the pipeline after the stream stalls or the camera is unplugged
    reconnect_attempts: int = 5  # consecutive failed restarts before read() gives up (DeviceError)
    reconnect_interval_s: float = 1.0  # minimum time between two restart attempts
    playback_file: str | None = None  # replay a .bag recording through the same driver instead of a camera
    playback_real_time: bool = False  # False: every recorded frame is delivered, as fast as it is read
    playback_repeat: bool = False  # loop the recording

    def __post_init__(self) -> None:
        problems = ConfigProblems()
        need = problems.need

        need(isinstance(self.serial, str), f"serial must be a string, got {self.serial!r}")
        need(isinstance(self.name, str) and bool(self.name.strip()), "name must be a non-empty string")
        for f in ("color_width", "color_height", "color_fps", "depth_width", "depth_height", "depth_fps",
                  "reconnect_attempts"):
            need(is_int(getattr(self, f)), f"{f} must be an int, got {getattr(self, f)!r}")
        if not problems:
            c = (self.color_width, self.color_height)
            if c not in L515_COLOR_PROFILES or self.color_fps not in L515_COLOR_PROFILES[c]:
                problems.append(f"colour profile {c[0]}x{c[1]}@{self.color_fps} is not an L515 colour profile "
                                f"(supported: {_profile_table(L515_COLOR_PROFILES)})")
            d = (self.depth_width, self.depth_height)
            if self.enable_depth and (d not in L515_DEPTH_PROFILES or self.depth_fps not in L515_DEPTH_PROFILES[d]):
                problems.append(f"depth profile {d[0]}x{d[1]}@{self.depth_fps} is not an L515 depth profile "
                                f"(supported: {_profile_table(L515_DEPTH_PROFILES)})")
            need(self.reconnect_attempts >= 0, "reconnect_attempts must be >= 0")
        if self.depth_scale is not None:
            need(is_number(self.depth_scale) and self.depth_scale > 0,
                 f"depth_scale must be a positive number of metres per unit, got {self.depth_scale!r}")
        need(is_number(self.first_frame_timeout_s) and self.first_frame_timeout_s > 0,
             "first_frame_timeout_s must be > 0")
        need(is_number(self.reconnect_interval_s) and self.reconnect_interval_s >= 0,
             "reconnect_interval_s must be >= 0")
        for f in ("enable_depth", "align_depth_to_color", "reconnect", "playback_real_time", "playback_repeat"):
            need(isinstance(getattr(self, f), bool), f"{f} must be true/false, got {getattr(self, f)!r}")
        if self.playback_file is not None:
            need(isinstance(self.playback_file, str) and bool(self.playback_file.strip()),
                 "playback_file must be a path to a .bag file or None")
        problems.raise_if_any(ConfigError, f"RealSenseCameraConfig for {self.name!r}")

    @property
    def is_playback(self) -> bool:
        return self.playback_file is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RealSenseCameraConfig:
        """Build from a mapping (e.g. a YAML section). Unknown keys are an error, not silently ignored."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"camera config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown camera config keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "serial" in values and isinstance(values["serial"], int):  # YAML reads an all-digit serial as an int
            values["serial"] = str(values["serial"])
        return cls(**values)
