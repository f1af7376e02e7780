"""Device factory: real drivers through ``hardware.registry`` (imported lazily) or the simulated task world (no
ROS imports here).

Real mode makes one device per call (each node process owns its device): ``make_device(role, kind, params,
extra)`` looks the kind up in the registry (a node's ``device_kind`` parameter) and builds its driver config
from ``params`` (node parameters named exactly as the config's fields) plus ``extra`` (JSON object text, e.g.
the ``driver_options`` parameter, passed verbatim), so new driver options and new device kinds need no code here.
Sim mode builds ONE ``SimWorld`` whose arm, hand and cameras share a physics thread, so they must live in one
process (``sim_devices``).
"""
from __future__ import annotations

import importlib
from typing import Any

from embodiment import DEVICE_KINDS


def make_device(role: str, kind: str, params: dict[str, Any], extra: str | dict | None = None):
    """The real device of ``kind`` (registered for ``role``: "arm", "hand" or "camera"), not yet connected.

    ``params`` keys are the driver config's field names (None / "" = the driver's default), ``extra`` a JSON
    object (text or dict) of further fields. An unknown kind, or a key that is not a field, is a ValueError
    naming the kinds / fields there are; a missing driver dependency (franky, pyrealsense2) surfaces here."""
    from hardware import registry

    spec = registry.get(role, kind or DEVICE_KINDS.get(role, ""))
    return spec.make(registry.build_config(spec, params, extra))


def build_config(config_cls, params: dict[str, Any], extra: str | dict | None = None):
    """``hardware.registry.build_config``: the dataclass ``config_cls`` from keys that are exactly its field names
    (None / "" = unset) plus ``extra`` (JSON object text or dict); a key that is not a field is a ValueError."""
    from hardware.registry import build_config as build

    return build(config_cls, params, extra)


def _load(module: str, *names: str):
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeError(f"real-device driver module {module} is not available: {exc}") from exc
    return [getattr(mod, n) for n in names]


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
