"""Episode recording at a fixed rate, whatever feeds it (no ROS here).

``EpisodeRecorder`` samples the newest camera frames, joint states and operator command at ``fps`` into a
``LeRobotV3Writer``. Who calls ``tick(now)`` differs: the ROS recorder node (its own thread, wall clock) and the
fast simulated ``record`` command (the world's simulated clock). Episode control (start with the task
instruction, save, discard) comes from services or the operator's buttons; ``status()`` is the live status line.

``start`` does not begin the episode at once: it begins at the first tick at which every input (each camera's
frame, the joint states, the operator's command) has been updated since the request, so an episode never opens
with what was current before it (the previous episode's last command, a frame from before the world reset).

A frame is recorded on every tick while an episode runs. A tick whose newest camera frame is not newer than the
one recorded at the previous tick counts as a dropped frame (the camera fell behind the recording rate); the
frame is still written (the previous image again) so the dataset keeps its fixed rate.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from embodiment import ACTION_DIM


@dataclass
class RecorderStatus:
    recording: bool
    episode: int  # index of the episode in progress (or the next one)
    episodes_saved: int
    episodes_target: int  # 0: no target
    elapsed_s: float
    frames: int
    dropped_frames: int
    task: str = ""
    saved_this_run: int = 0  # episodes saved since this recorder started (the dataset may hold earlier ones)

    def line(self) -> str:
        if self.episodes_target and self.saved_this_run >= self.episodes_target and not self.recording:
            return f"[done] {self.saved_this_run}/{self.episodes_target} episodes saved"
        target = f"/{self.episodes_target}" if self.episodes_target else ""
        state = "REC" if self.recording else "idle"
        return (f"[{state}] episode {self.episode + 1}{target} ({self.episodes_saved} saved)  "
                f"{self.elapsed_s:5.1f} s  {self.frames} frames  {self.dropped_frames} dropped"
                + (f"  task: {self.task}" if self.task else ""))


@dataclass
class _Latest:
    images: dict[str, tuple[float, np.ndarray]] = field(default_factory=dict)  # camera -> (stamp, frame)
    state: np.ndarray | None = None
    action: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    updated: dict[str, float] = field(default_factory=dict)  # input -> clock() when it was last set


class EpisodeRecorder:
    """Thread-safe: the inputs are set from callbacks, ``tick`` from a recording thread or loop."""

    def __init__(self, writer, cameras: list[str], episodes_target: int = 0, clock=time.monotonic, decode=None):
        """``decode``: turns what ``set_image`` was given into the HxWx3 uint8 frame the dataset stores; it runs
        only for the frames a tick records (cameras deliver faster than the recording rate, and nothing is decoded
        while no episode runs). Default: the frame is given decoded."""
        self.writer = writer
        self._decode = decode or (lambda frame: frame)
        self.cameras = list(cameras)
        self.episodes_target = episodes_target
        self.clock = clock
        self._latest = _Latest()
        self._lock = threading.Lock()
        self._recording = False
        self._task = ""
        self._t0 = 0.0
        self._frames = 0
        self._dropped = 0
        self._last_stamps: dict[str, float] = {}
        self._saved_this_run = 0
        self._pending: tuple[str, float] | None = None  # (task, requested at) of an episode waiting to begin

    # ------------------------------------------------------------------------------------------ inputs
    def set_image(self, camera: str, stamp: float, frame: np.ndarray) -> None:
        with self._lock:
            self._latest.images[camera] = (float(stamp), frame)
            self._latest.updated[f"camera {camera}"] = self.clock()

    def set_state(self, state: np.ndarray) -> None:
        with self._lock:
            self._latest.state = np.asarray(state, dtype=np.float32)
            self._latest.updated["joint states"] = self.clock()

    def set_action(self, action: np.ndarray) -> None:
        with self._lock:
            self._latest.action = np.asarray(action, dtype=np.float32)
            self._latest.updated["operator command"] = self.clock()

    def set_extra(self, key: str, value: np.ndarray) -> None:
        with self._lock:
            self._latest.extras[key] = np.asarray(value)

    # ------------------------------------------------------------------------------------------ control
    @property
    def recording(self) -> bool:
        return self._recording

    @property
    def starting(self) -> bool:
        """An episode was requested and waits for fresh inputs."""
        return self._pending is not None

    def _stale_inputs(self, since: float) -> list[str]:
        with self._lock:
            keys = [f"camera {c}" for c in self.cameras] + ["joint states", "operator command"]
            return [k for k in keys if self._latest.updated.get(k, -float("inf")) <= since]

    def start(self, task: str) -> tuple[bool, str]:
        """Request an episode: it begins at the first tick with every input updated after this call."""
        if self._recording or self._pending is not None:
            return False, "an episode is already being recorded (save or discard it first)"
        if not task.strip():
            return False, "an episode needs its task instruction"
        if self.episodes_target and self._saved_this_run >= self.episodes_target:
            return False, f"all {self.episodes_target} episode(s) of this run are recorded"
        self._pending = (task, self.clock())
        return True, f"episode {self.writer.num_episodes + 1} starts with the next fresh frame: {task!r}"

    def _begin(self, task: str) -> None:
        self.writer.start_episode(task)
        with self._lock:
            self._recording, self._task = True, task
            self._t0, self._frames, self._dropped = self.clock(), 0, 0
            self._last_stamps = {}

    def save(self) -> tuple[bool, str]:
        if self._pending is not None:
            self._pending = None
            return False, "the episode never started (no fresh inputs after start); nothing saved"
        if not self._recording:
            return False, "no episode is being recorded"
        with self._lock:
            self._recording = False
        if self._frames == 0:
            self.writer.discard_episode()
            return False, "the episode had no frames; discarded"
        try:
            index = self.writer.save_episode()
        except Exception as exc:  # noqa: BLE001 - the writer discarded the episode; the dataset is as before
            return False, (f"saving the episode failed, it was discarded ({self._frames} frames; the dataset's "
                           f"saved episodes are intact): {exc}")
        self._saved_this_run += 1
        return True, f"saved episode {index} ({self._frames} frames, {self._dropped} dropped)"

    def discard(self) -> tuple[bool, str]:
        if self._pending is not None:
            self._pending = None
            return True, "episode discarded before it started"
        if not self._recording:
            return False, "no episode is being recorded"
        with self._lock:
            self._recording = False
        self.writer.discard_episode()
        return True, "episode discarded"

    # ------------------------------------------------------------------------------------------ sampling
    def tick(self, now: float | None = None) -> bool:
        """Record one frame of the newest inputs (when an episode runs); True when a frame was written."""
        if self._pending is not None and not self._recording:
            task, since = self._pending
            if self._stale_inputs(since):
                return False
            self._pending = None
            self._begin(task)
        if not self._recording:
            return False
        with self._lock:
            latest = self._latest
            images = {c: latest.images[c] for c in self.cameras}
            state, action, extras = latest.state, latest.action, dict(latest.extras)
        dropped = any(self._last_stamps.get(c) is not None and stamp <= self._last_stamps[c]
                      for c, (stamp, _) in images.items())
        self._last_stamps = {c: stamp for c, (stamp, _) in images.items()}
        frame = {f"observation.images.{c}": self._decode(img) for c, (_, img) in images.items()}
        frame["observation.state"] = state
        frame["action"] = action
        frame.update(extras)
        if action.shape != (ACTION_DIM,) or state.shape != (ACTION_DIM,):
            raise ValueError(f"state and action must be ({ACTION_DIM},), got {state.shape} and {action.shape}")
        self.writer.add_frame(frame)
        self._frames += 1
        self._dropped += int(dropped)
        return True

    def stale(self) -> list[str]:
        """The inputs a requested episode still waits for (empty when none is requested)."""
        return [] if self._pending is None else self._stale_inputs(self._pending[1])

    def status(self) -> RecorderStatus:
        return RecorderStatus(self._recording, self.writer.num_episodes, self.writer.num_episodes,
                              self.episodes_target, (self.clock() - self._t0) if self._recording else 0.0,
                              self._frames, self._dropped, self._task, self._saved_this_run)
