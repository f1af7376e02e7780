"""Keyboard operator: terminal keys move the wrist target in small Cartesian steps (robot base frame).

Keys (one character each; upper case = the same key):
    w / s   +x / -x  (forward / back)          i / k   pitch  + / -  (about base y)
    a / d   +y / -y  (left / right)            j / l   yaw    + / -  (about base z)
    r / f   +z / -z  (up / down)               u / o   roll   + / -  (about base x)
    c       close the hand (HAND_CLOSE)        x       open the hand (HAND_OPEN)
    space   toggle the clutch (released: the robot holds; engaging again re-anchors, so nothing jumps)
    1       START an episode   2  SAVE it   3  DISCARD it   q / ESC  QUIT

Each ``read()`` applies the keys that arrived since the previous one and returns a sample of the current wrist
pose (a heartbeat: the session's deadman then only fires when the keyboard stream itself ends, e.g. stdin closed
or ``close()``). Keys come from ``feed("wwd ")`` (tests, other front ends) and/or a text ``stream`` read by a
background thread (``KeyboardSource.from_terminal()`` reads the terminal in cbreak mode).
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from embodiment import HAND_DOF, HAND_RANGE, READY_Q

from ..operator import Button, OperatorSample

__all__ = ["KEYMAP", "KeyboardSource"]

_AXES = {"w": (0, +1), "s": (0, -1), "a": (1, +1), "d": (1, -1), "r": (2, +1), "f": (2, -1)}
_ROTS = {"u": (0, +1), "o": (0, -1), "i": (1, +1), "k": (1, -1), "j": (2, +1), "l": (2, -1)}
_BUTTONS = {"1": Button.START, "2": Button.SAVE, "3": Button.DISCARD, "q": Button.QUIT, "\x1b": Button.QUIT}
KEYMAP = {**{k: f"move {'xyz'[a]}{'+' if s > 0 else '-'}" for k, (a, s) in _AXES.items()},
          **{k: f"rotate {'xyz'[a]}{'+' if s > 0 else '-'}" for k, (a, s) in _ROTS.items()},
          "c": "hand close", "x": "hand open", " ": "clutch toggle",
          **{k: b.value for k, b in _BUTTONS.items()}}


def _rot(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def ready_wrist_pose() -> np.ndarray:
    """The hand base pose at READY_Q (FR3 flange forward kinematics)."""
    from hardware.franka.kinematics import fr3_flange_poses

    return np.asarray(fr3_flange_poses(np.asarray([READY_Q], dtype=np.float64))[0], dtype=np.float64)


def _cbreak(stream):
    """Put a terminal into cbreak mode (keys without Enter, no echo); returns the function that restores it."""
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return None
    import termios
    import tty

    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class KeyboardSource:
    name = "keyboard"

    def __init__(self, stream=None, *, initial_pose=None, position_step: float = 0.01, rotation_step: float = 0.05,
                 hand_step: float = HAND_RANGE[1], clutch: bool = True, terminal: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        """``stream``: a text stream to read keys from in a background thread (None: keys only via ``feed``);
        ``terminal``: read the controlling terminal (stdin) key by key without echo (``close()`` restores it).
        ``position_step`` (m) / ``rotation_step`` (rad) per key press; ``hand_step``: how far one c / x press moves
        the hand targets (the default goes fully closed / open). ``clutch``: engaged at the start."""
        self.pose = np.array(ready_wrist_pose() if initial_pose is None else initial_pose, dtype=np.float64)
        if self.pose.shape != (4, 4):
            raise ValueError(f"initial_pose must be (4, 4), got {self.pose.shape}")
        self.position_step = float(position_step)
        self.rotation_step = float(rotation_step)
        self.hand_step = float(hand_step)
        self.hand = np.full(HAND_DOF, HAND_RANGE[1])
        self.clutch = bool(clutch)
        self.clock = clock
        self.keys: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.closed = False
        self.stream_ended = False
        self._restore = None
        self._thread = None
        if terminal:
            stream = sys.stdin
            self._restore = _cbreak(stream)
        if stream is not None:
            self._thread = threading.Thread(target=self._read_stream, args=(stream,), name="keyboard", daemon=True)
            self._thread.start()

    @classmethod
    def from_terminal(cls, **kwargs) -> "KeyboardSource":
        """Read the controlling terminal (stdin) key by key, without echo; ``close()`` restores it."""
        return cls(terminal=True, **kwargs)

    def _read_stream(self, stream) -> None:
        try:
            while not self.closed:
                ch = stream.read(1)
                if not ch:
                    break
                self.keys.put(ch)
        except (OSError, ValueError):
            pass
        self.stream_ended = True  # stdin closed / app gone: no more samples, the deadman holds

    def feed(self, keys: str) -> None:
        """Queue key presses (as if typed)."""
        for ch in keys:
            self.keys.put(ch)

    def _apply(self, ch: str, buttons: set) -> None:
        k = ch.lower()
        if k in _AXES:
            axis, sign = _AXES[k]
            self.pose[axis, 3] += sign * self.position_step
        elif k in _ROTS:
            axis, sign = _ROTS[k]
            self.pose[:3, :3] = _rot(axis, sign * self.rotation_step) @ self.pose[:3, :3]
        elif k == "c":
            self.hand = np.clip(self.hand - self.hand_step, *HAND_RANGE)
            buttons.add(Button.HAND_CLOSE)
        elif k == "x":
            self.hand = np.clip(self.hand + self.hand_step, *HAND_RANGE)
            buttons.add(Button.HAND_OPEN)
        elif k == " ":
            self.clutch = not self.clutch
        elif ch in _BUTTONS or k in _BUTTONS:
            buttons.add(_BUTTONS.get(ch, _BUTTONS.get(k)))

    def read(self) -> OperatorSample | None:
        if self.closed:
            return None
        buttons: set[Button] = set()
        while True:
            try:
                ch = self.keys.get_nowait()
            except queue.Empty:
                break
            self._apply(ch, buttons)
        if self.stream_ended and not buttons:
            return None
        return OperatorSample(stamp=self.clock(), wrist_pose=self.pose.copy(), hand_targets=self.hand.copy(),
                              clutch=self.clutch, buttons=frozenset(buttons))

    def close(self) -> None:
        self.closed = True
        if self._restore is not None:
            try:
                self._restore()
            finally:
                self._restore = None
