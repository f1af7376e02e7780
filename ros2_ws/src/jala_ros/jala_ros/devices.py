"""Device factory: real drivers (imported lazily) or the simulated task world (no ROS imports here).

Real mode makes one device per call (each node process owns its device). Sim mode builds ONE ``SimWorld``
whose arm, hand and cameras share a physics thread, so they must live in one process (``sim_devices``).

Driver configs are built from plain dicts: keys matching the driver config dataclass's fields are passed on,
a few common aliases are mapped (``robot_ip`` -> the field the Franka config uses, ...), and ``extra``
(JSON object text, e.g. from a ROS parameter) is passed verbatim, so new driver options need no code here.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any

_ALIASES = {
    "robot_ip": ("robot_ip", "host", "ip", "fci_ip", "hostname"),
    "serial": ("serial", "serial_number", "device_serial"),
    "camera_name": ("name",),
    "width": ("width", "color_width", "image_width"),
    "height": ("height", "color_height", "image_height"),
    "fps": ("fps", "frame_rate", "color_fps"),
    "hand_host": ("host",),
    "hand_port": ("port",),
    "serial_port": ("serial_port",),
    "transport": ("transport",),
}


def build_config(config_cls, params: dict[str, Any], extra: str | dict | None = None):
    """Instance of the dataclass ``config_cls`` from ``params`` (aliases mapped, unknown keys ignored, empty
    strings treated as unset) plus ``extra`` (JSON text or dict, passed verbatim: unknown keys there raise)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or (isinstance(value, str) and value == ""):
            continue
        for name in _ALIASES.get(key, (key,)):
            if name in fields:
                kwargs[name] = value
                break
    if extra:
        extra_d = json.loads(extra) if isinstance(extra, str) else dict(extra)
        unknown = set(extra_d) - fields
        if unknown:
            raise ValueError(f"{config_cls.__name__} has no option(s) {sorted(unknown)}")
        kwargs.update(extra_d)
    return config_cls(**kwargs)


def _load(module: str, *names: str):
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeError(f"real-device driver module {module} is not available: {exc}") from exc
    return [getattr(mod, n) for n in names]


def make_real_arm(params: dict[str, Any], extra: str | dict | None = None):
    """FrankaArm from ``hardware.franka.arm`` (imports franky; params: robot_ip, ...)."""
    arm_cls, = _load("hardware.franka.arm", "FrankaArm")
    cfg_cls, = _load("hardware.franka", "FrankaArmConfig")
    return arm_cls(build_config(cfg_cls, params, extra))


def make_real_hand(params: dict[str, Any], extra: str | dict | None = None):
    """InspireHand from ``hardware.inspire.driver`` (params: transport tcp|rtu, hand_host, hand_port, serial_port)."""
    hand_cls, = _load("hardware.inspire.driver", "InspireHand")
    cfg_cls, = _load("hardware.inspire", "InspireHandConfig")
    return hand_cls(build_config(cfg_cls, params, extra))


def make_real_camera(params: dict[str, Any], extra: str | dict | None = None):
    """RealSenseCamera from ``hardware.realsense`` (params: serial, camera_name, width, height, fps,
    enable_depth)."""
    cam_cls, cfg_cls = _load("hardware.realsense", "RealSenseCamera", "RealSenseCameraConfig")
    return cam_cls(build_config(cfg_cls, params, extra))


def make_sim_world(task: str, variant: str = "seen", seed: int = 0, render_width: int = 320,
                   render_height: int = 240, camera_fps: float = 30.0, extra: str | dict | None = None):
    """The simulated task world (``hardware.sim.SimWorld``); its arm, hand and cameras share one physics thread."""
    world_cls, cfg_cls = _load("hardware.sim", "SimWorld", "SimWorldConfig")
    params = dict(task=task, variant=variant, seed=seed, render_width=render_width, render_height=render_height,
                  camera_fps=camera_fps)
    return world_cls(build_config(cfg_cls, params, extra))


def pick_sim_cameras(available: list[str], wanted: list[str], count: int) -> list[str]:
    """Which simulated cameras serve the configured camera slots: the names asked for (each must exist), or,
    when none are named, the first ``count`` cameras of the world in its own order."""
    if wanted and any(wanted):
        missing = [w for w in wanted if w and w not in available]
        if missing:
            raise ValueError(f"the simulated world has no camera(s) {missing}; it has {available}")
        return [w if w else available[i] for i, w in enumerate(wanted)]
    if len(available) < count:
        raise ValueError(f"need {count} camera(s), the simulated world has {available}")
    return list(available[:count])
