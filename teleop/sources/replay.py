"""Replay of recorded operator samples: ``record_samples(path, samples)`` writes them, ``ReplaySource`` plays them.

File format (``.npz``, no pickled objects; N samples):
    stamp          (N,)       float64  when each sample was taken (the recording machine's clock)
    clutch         (N,)       bool
    buttons        (N,)       str      comma-separated ``Button`` values ("" when none)
    wrist_pose     (N, 4, 4)  float64  \\
    arm_q          (N, 7)     float64   | present only when some sample has them; the rows of samples that lack
    hand_keypoints (N, 21, 3) float64   | them are NaN (read back as None)
    hand_targets   (N, 6)     float64  /
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..operator import Button, OperatorSample

__all__ = ["FIELDS", "ReplaySource", "load_samples", "record_samples"]

FIELDS = {"wrist_pose": (4, 4), "arm_q": (7,), "hand_keypoints": (21, 3), "hand_targets": (6,)}


def record_samples(path: str | Path, samples: Iterable[OperatorSample]) -> Path:
    """Write ``samples`` to ``path`` (``.npz``; the suffix is added when missing). Returns the path written."""
    samples = list(samples)
    if not samples:
        raise ValueError("no samples to record")
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    stamps = np.array([s.stamp for s in samples], dtype=np.float64)
    if not np.all(np.isfinite(stamps)) or np.any(np.diff(stamps) < 0):
        raise ValueError("sample stamps must be finite and non-decreasing")
    arrays: dict[str, np.ndarray] = {
        "stamp": stamps,
        "clutch": np.array([bool(s.clutch) for s in samples]),
        "buttons": np.array([",".join(sorted(b.value for b in s.buttons)) for s in samples], dtype=np.str_),
    }
    for name, shape in FIELDS.items():
        values = [getattr(s, name) for s in samples]
        if all(v is None for v in values):
            continue
        out = np.full((len(samples), *shape), np.nan)
        for i, v in enumerate(values):
            if v is not None:
                out[i] = np.asarray(v, dtype=np.float64).reshape(shape)
        arrays[name] = out
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def load_samples(path: str | Path) -> list[OperatorSample]:
    """The samples of a file written by ``record_samples``."""
    with np.load(Path(path), allow_pickle=False) as z:
        stamps = z["stamp"]
        n = stamps.shape[0]
        clutch = z["clutch"] if "clutch" in z.files else np.ones(n, bool)
        buttons = z["buttons"] if "buttons" in z.files else np.full(n, "")
        fields = {name: z[name] for name in FIELDS if name in z.files}
    out = []
    for i in range(n):
        kw = {}
        for name, arr in fields.items():
            v = arr[i]
            kw[name] = None if np.all(np.isnan(v)) else v.copy()
        names = [b for b in str(buttons[i]).split(",") if b]
        out.append(OperatorSample(stamp=float(stamps[i]), clutch=bool(clutch[i]),
                                  buttons=frozenset(Button(b) for b in names), **kw))
    return out


class ReplaySource:
    """Plays a recorded file. ``realtime=True``: each ``read()`` returns the newest sample due by now (the
    recording's timing replayed from the first read on ``clock``; buttons of samples skipped in between are kept),
    or None when none is newer. ``realtime=False``: one sample per ``read()``. After the last sample ``read()``
    returns None (``done``): the stream has stopped, so the session's deadman holds, unless ``loop``.
    ``restamp``: stamps are moved onto ``clock`` (the time the sample is due in real time, the time of the read
    otherwise), so teleop latency is measured as for a live source; False keeps the recorded stamps."""

    name = "replay"

    def __init__(self, path: str | Path, realtime: bool = True, clock: Callable[[], float] = time.monotonic,
                 loop: bool = False, restamp: bool = True):
        self.path = Path(path)
        self.samples = load_samples(self.path)
        if not self.samples:
            raise ValueError(f"{self.path} holds no samples")
        self.realtime = bool(realtime)
        self.clock = clock
        self.loop = bool(loop)
        self.restamp = bool(restamp)
        self._rec = np.array([s.stamp for s in self.samples]) - self.samples[0].stamp
        self.rewind()

    def rewind(self) -> None:
        self.index = 0  # next sample to return
        self._t0: float | None = None
        self.closed = False

    @property
    def done(self) -> bool:
        return self.index >= len(self.samples) and not self.loop

    def read(self) -> OperatorSample | None:
        if self.closed:
            return None
        if self.index >= len(self.samples):
            if not self.loop:
                return None
            self.rewind()
        now = self.clock()
        if not self.realtime:
            s = self.samples[self.index]
            self.index += 1
            return self._stamped(s, now) if self.restamp else s
        if self._t0 is None:
            self._t0 = now
        due = int(np.searchsorted(self._rec, now - self._t0, side="right"))  # samples due by now
        if due <= self.index:
            return None
        skipped = self.samples[self.index:due - 1]
        s = self.samples[due - 1]
        self.index = due
        buttons = frozenset().union(*(x.buttons for x in skipped), s.buttons)
        stamp = self._t0 + float(self._rec[due - 1]) if self.restamp else s.stamp
        return OperatorSample(stamp=stamp, wrist_pose=s.wrist_pose, arm_q=s.arm_q, hand_keypoints=s.hand_keypoints,
                              hand_targets=s.hand_targets, clutch=s.clutch, buttons=buttons)

    @staticmethod
    def _stamped(s: OperatorSample, stamp: float) -> OperatorSample:
        return OperatorSample(stamp=stamp, wrist_pose=s.wrist_pose, arm_q=s.arm_q, hand_keypoints=s.hand_keypoints,
                              hand_targets=s.hand_targets, clutch=s.clutch, buttons=s.buttons)

    def close(self) -> None:
        self.closed = True
