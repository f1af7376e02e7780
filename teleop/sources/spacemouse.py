"""3Dconnexion SpaceMouse through ``pyspacemouse`` (Cartesian arm motion + hand buttons), as an ``OperatorSource``.

``pyspacemouse`` talks HID through ``easyhid``, which loads the system library ``libhidapi-hidraw0``
(scripts/setup_env.sh installs it; the device node also needs read access, e.g. a udev rule for
/dev/hidraw*). The module is imported when the source opens; missing -> one ImportError line.

The puck is a velocity device: each ``read()`` polls the state (x, y, z, roll, pitch, yaw in -1..1, buttons) and
integrates it into the wrist pose target (robot base frame):
- translation += ``linear_speed`` [m/s] * (x, y, z) * dt, after the per-axis ``deadband`` and the (3, 3)
  ``axes`` matrix (device axes -> base axes; identity by default, i.e. pyspacemouse's axis convention);
- rotation = exp(``angular_speed`` [rad/s] * (roll, pitch, yaw) * dt) @ rotation (about the base axes, the
  wrist position fixed);
- the translation is clipped into ``workspace`` ((3,) low, (3,) high) when given.
The pose starts at ``start_pose`` (call ``reset_pose(T)`` with the robot's current hand pose to start from it).

Buttons (two-button models; ``left_button`` / ``right_button`` are the indices):
- left: toggles the hand between open (``open_targets``) and the selected grasp preset (``presets[preset]``,
  Inspire angles 0..1000, 1000 = open); emits HAND_CLOSE / HAND_OPEN and sets ``hand_targets``;
  ``select_preset(name)`` picks another preset (it applies at once when the hand is closed);
- right: ``right_mode="episode"`` (default): short press = START (SAVE while an episode runs), held
  ``long_press_s`` or longer = DISCARD; ``right_mode="clutch"``: motion only while it is held (the pose target does
  not integrate and ``clutch`` is False while released).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from teleop.operator import Button, OperatorSample
from teleop.sources.webxr import EpisodeGesture

EXTRA_HINT = ("the SpaceMouse source needs 'pyspacemouse' (pip install -r requirements.txt) and the system "
              "library libhidapi-hidraw0 (scripts/setup_env.sh)")

OPEN_TARGETS = (1000.0,) * 6
# Inspire RH56 order: little, ring, middle, index, thumb bend, thumb rotation (0 = closed, 1000 = open)
DEFAULT_PRESETS = {
    "power": (0.0, 0.0, 0.0, 0.0, 400.0, 1000.0),
    "pinch": (1000.0, 1000.0, 1000.0, 300.0, 300.0, 200.0),
    "tripod": (1000.0, 1000.0, 300.0, 300.0, 300.0, 200.0),
}


def _rotvec_to_matrix(w: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(w))
    if theta < 1e-12:
        return np.eye(3)
    k = w / theta
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(theta) * kx + (1.0 - np.cos(theta)) * (kx @ kx)


def _import_pyspacemouse():
    try:
        import pyspacemouse
    except (ImportError, OSError) as e:
        raise ImportError(f"{EXTRA_HINT} ({e})") from e
    return pyspacemouse


class SpaceMouseSource:
    """SpaceMouse -> wrist pose target + hand presets + clutch / episode buttons (see the module docstring).
    ``device``: pyspacemouse device name (None: the first one found)."""

    name = "spacemouse"

    def __init__(self, *, device: str | None = None, start_pose=None, linear_speed: float = 0.10,
                 angular_speed: float = 0.6, deadband: float = 0.05, axes=None, workspace=None,
                 left_button: int = 0, right_button: int = 1, right_mode: str = "episode",
                 long_press_s: float = 1.5, open_targets=OPEN_TARGETS, presets=None, preset: str = "power",
                 max_dt: float = 0.1, clock: Callable[[], float] = time.monotonic):
        if right_mode not in ("episode", "clutch"):
            raise ValueError(f"right_mode must be 'episode' or 'clutch', got {right_mode!r}")
        self.presets = {k: np.asarray(v, dtype=float) for k, v in (presets or DEFAULT_PRESETS).items()}
        if preset not in self.presets:
            raise ValueError(f"unknown grasp preset {preset!r}; have {sorted(self.presets)}")
        for k, v in self.presets.items():
            if v.shape != (6,):
                raise ValueError(f"preset {k!r} must have 6 Inspire angles")
        self.preset = preset
        self.open_targets = np.asarray(open_targets, dtype=float)
        self.linear_speed, self.angular_speed = float(linear_speed), float(angular_speed)
        self.deadband, self.max_dt = float(deadband), float(max_dt)
        self.axes = np.eye(3) if axes is None else np.asarray(axes, dtype=float)
        if self.axes.shape != (3, 3):
            raise ValueError("axes must be (3, 3)")
        self.workspace = None if workspace is None else (np.asarray(workspace[0], float),
                                                         np.asarray(workspace[1], float))
        self.left_button, self.right_button, self.right_mode = int(left_button), int(right_button), right_mode
        self.episode = EpisodeGesture(long_press_s)
        self.clock = clock
        self.hand_closed = False
        self._left_was = False
        self._pose = np.eye(4)
        self.reset_pose(np.array([[1.0, 0, 0, 0.4], [0, -1.0, 0, 0.0], [0, 0, -1.0, 0.4], [0, 0, 0, 1.0]])
                        if start_pose is None else start_pose)
        self._last_t: float | None = None
        psm = _import_pyspacemouse()
        try:
            self._dev = psm.open(device=device) if device is not None else psm.open()
        except (OSError, RuntimeError, AttributeError) as e:
            raise RuntimeError(f"could not open a SpaceMouse ({e}); is it plugged in, is libhidapi-hidraw0 "
                               "installed and /dev/hidraw* readable?") from e
        if self._dev is None or self._dev is False:
            raise RuntimeError("could not open a SpaceMouse (pyspacemouse.open() found none)")

    def reset_pose(self, pose) -> None:
        """Restart the integration from ``pose`` ((4, 4), robot base frame), e.g. the robot's current hand pose."""
        p = np.asarray(pose, dtype=float)
        if p.shape != (4, 4):
            raise ValueError("pose must be (4, 4)")
        self._pose = p.copy()

    def select_preset(self, name: str) -> None:
        if name not in self.presets:
            raise ValueError(f"unknown grasp preset {name!r}; have {sorted(self.presets)}")
        self.preset = name

    def _dead(self, v: np.ndarray) -> np.ndarray:
        # deadband with the remaining range rescaled to 0..1 (no jump at the edge)
        mag = np.clip((np.abs(v) - self.deadband) / max(1e-9, 1.0 - self.deadband), 0.0, 1.0)
        return np.sign(v) * mag

    @staticmethod
    def _button(buttons, i: int) -> bool:
        try:
            return bool(buttons[i])
        except (IndexError, TypeError):
            return False

    def read(self) -> OperatorSample | None:
        state = self._dev.read()
        now = self.clock()
        dt = 0.0 if self._last_t is None else min(max(now - self._last_t, 0.0), self.max_dt)
        self._last_t = now
        if state is None:
            return None
        buttons = getattr(state, "buttons", None) or []
        left, right = self._button(buttons, self.left_button), self._button(buttons, self.right_button)
        pressed: set[Button] = set()
        if left and not self._left_was:
            self.hand_closed = not self.hand_closed
            pressed.add(Button.HAND_CLOSE if self.hand_closed else Button.HAND_OPEN)
        self._left_was = left
        if self.right_mode == "clutch":
            clutch = right
        else:
            clutch = True
            pressed |= self.episode.update(right, now)
        if clutch and dt > 0.0:
            lin = self._dead(np.array([state.x, state.y, state.z], dtype=float))
            ang = self._dead(np.array([state.roll, state.pitch, state.yaw], dtype=float))
            pose = self._pose.copy()
            pose[:3, 3] += self.axes @ lin * (self.linear_speed * dt)
            pose[:3, :3] = _rotvec_to_matrix(self.axes @ ang * (self.angular_speed * dt)) @ pose[:3, :3]
            if self.workspace is not None:
                pose[:3, 3] = np.clip(pose[:3, 3], self.workspace[0], self.workspace[1])
            self._pose = pose
        targets = self.presets[self.preset] if self.hand_closed else self.open_targets
        return OperatorSample(stamp=now, wrist_pose=self._pose.copy(), hand_targets=targets.copy(), clutch=clutch,
                              buttons=frozenset(pressed))

    def close(self) -> None:
        dev, self._dev = getattr(self, "_dev", None), None
        if dev is not None and hasattr(dev, "close"):
            try:
                dev.close()
            except Exception:
                pass
