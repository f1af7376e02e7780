"""Post-training samples from LeRobot v3.0 demonstration datasets (training.recording writes them).

One sample per recorded frame i of an episode (every ``frame_stride``-th frame):

- ``images``: uint8 (views, H, W, 3), the frame of each camera feature at the frame's timestamp, at the size
  they were recorded at (the policy's ``input_image_hw``; the policy resizes to its encoders' sizes itself, as it
  does for live camera frames);
- ``state``: the 13-D ``observation.state`` of frame i;
- ``actions``: (horizon, 13), the recorded ``action`` at t_i + action_dt * (1 .. horizon), linearly interpolated
  on the episode's timestamps, so a dataset recorded at another rate than 15 Hz is resampled to the policy's
  action rate. Element k is the target for t_i + k * action_dt, the times ``JalaPolicy.predict`` gives a chunk's
  actions. (The recorded action of a frame is the operator's command in force at that frame.)
- ``action_mask``: (horizon,), False where the query time lies past the episode's last frame: those steps
  repeat the last action (LeRobot's padding of a chunk at an episode end) and do not count in the loss;
- ``instruction``: the frame's task string (``meta/tasks.parquet``), the instruction the policy is given.

Video frames are decoded with PyAV (``LeRobotV3Dataset.decode_frames``) in the DataLoader's workers. With a
``frame_cache_dir`` each episode is decoded once, whole, into ``<dir>/<dataset id>/<camera>/episode_<n>.npy``
(written atomically) and read back memory-mapped.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from embodiment import ACTION_DIM
from jala_policy.config import ConfigError
from jala_policy.normalization import NormalizationStats
from training.files import atomic_write
from training.recording.lerobot_v3 import LeRobotV3Dataset

_TIME_EPS = 1e-6


def dataset_id(ds: LeRobotV3Dataset) -> str:
    """A short id that changes when the dataset's content does (episodes appended, re-recorded)."""
    key = json.dumps({"root": str(ds.root.resolve()), "frames": ds.num_frames, "episodes": ds.num_episodes,
                      "fps": ds.fps, "features": sorted(ds.features)}, sort_keys=True)
    return f"{ds.root.name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class EpisodeRef:
    dataset: int  # index into DemoChunkDataset.datasets
    episode: int  # episode index within that dataset


def split_episodes(num_episodes: int, val_fraction: float, val_max: int) -> tuple[list[int], list[int]]:
    """(train, val) episode indices: the last round(val_fraction * n) episodes (at least one when val_fraction
    > 0, at most ``val_max``, never all of them) are held out for validation."""
    n_val = max(1, int(round(val_fraction * num_episodes))) if val_fraction > 0 else 0
    n_val = min(n_val, val_max, max(0, num_episodes - 1))
    return list(range(num_episodes - n_val)), list(range(num_episodes - n_val, num_episodes))


class DemoChunkDataset(Dataset):
    """Samples of the given episodes of one or more LeRobot v3.0 datasets (see the module docstring)."""

    def __init__(self, datasets: list[LeRobotV3Dataset], episodes: list[EpisodeRef], *, horizon: int,
                 action_dt: float, camera_keys: list[str] | None = None, frame_stride: int = 1,
                 frame_cache_dir: str | Path | None = None, with_images: bool = True):
        if not datasets:
            raise ConfigError("post-training needs at least one dataset")
        self.datasets = datasets
        self.horizon = int(horizon)
        self.action_dt = float(action_dt)
        self.camera_keys = list(camera_keys) if camera_keys else list(datasets[0].video_keys)
        self.frame_cache_dir = Path(frame_cache_dir) if frame_cache_dir else None
        self.with_images = with_images
        self.image_hw = check_datasets(datasets, self.camera_keys)
        self.ids = [dataset_id(ds) for ds in datasets]
        self.episodes = list(episodes)
        # per episode: timestamps, state, action, the row offset of its first frame in the dataset, instruction
        self._timestamps, self._state, self._action, self._first_row, self._instruction = [], [], [], [], []
        index = []
        for e, ref in enumerate(self.episodes):
            ds = datasets[ref.dataset]
            data = ds.episode_data(ref.episode)
            ts = np.asarray(data["timestamp"], dtype=np.float64)
            if ts.size == 0:
                continue
            if np.any(np.diff(ts) <= 0):
                raise ConfigError(f"{ds.root}: episode {ref.episode} has timestamps that do not increase")
            self._timestamps.append(ts)
            self._state.append(np.asarray(data["observation.state"], dtype=np.float32))
            self._action.append(np.asarray(data["action"], dtype=np.float32))
            self._first_row.append(int(ds.episodes[ref.episode]["dataset_from_index"]))
            self._instruction.append(ds.tasks[int(data["task_index"][0])])
            index.extend((len(self._timestamps) - 1, i) for i in range(0, ts.size, frame_stride))
        self.index = np.asarray(index, dtype=np.int64).reshape(-1, 2)
        self._frame_cache: dict[tuple[int, str], np.ndarray] = {}

    # ------------------------------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def num_views(self) -> int:
        return len(self.camera_keys)

    @property
    def instructions(self) -> list[str]:
        return sorted(set(self._instruction))

    def chunk(self, e: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(actions (horizon, dim), mask (horizon,)) of episode slot ``e`` at its frame ``i``."""
        ts, act = self._timestamps[e], self._action[e]
        query = ts[i] + self.action_dt * np.arange(1, self.horizon + 1)
        actions = np.stack([np.interp(query, ts, act[:, d]) for d in range(act.shape[1])], axis=1)
        return actions.astype(np.float32), query <= ts[-1] + _TIME_EPS

    def frame_row(self, idx: int) -> tuple[int, int]:
        """(dataset index, row of the frame in its dataset) of sample ``idx`` (the feature cache's key)."""
        e, i = (int(v) for v in self.index[idx])
        return self.episodes[e].dataset, self._first_row[e] + i

    def __getitem__(self, idx: int) -> dict:
        e, i = (int(v) for v in self.index[idx])
        actions, mask = self.chunk(e, i)
        ds_i, row = self.frame_row(idx)
        item = {"index": idx, "dataset": ds_i, "row": row, "state": torch.from_numpy(self._state[e][i].copy()),
                "actions": torch.from_numpy(actions), "action_mask": torch.from_numpy(mask),
                "instruction": self._instruction[e]}
        if self.with_images:
            item["images"] = torch.from_numpy(np.stack([self.frame(e, i, key) for key in self.camera_keys]))
        return item

    # ------------------------------------------------------------------------------------------- frames
    def frame(self, e: int, i: int, key: str) -> np.ndarray:
        ref = self.episodes[e]
        if self.frame_cache_dir is None:
            return self.datasets[ref.dataset].decode_frames(ref.episode, key, [float(self._timestamps[e][i])])[0]
        return self.episode_frames(e, key)[i]

    def episode_frames(self, e: int, key: str) -> np.ndarray:
        """Every frame of episode slot ``e`` (T, H, W, 3), from the on-disk cache when there is one."""
        ref = self.episodes[e]
        ds = self.datasets[ref.dataset]
        if self.frame_cache_dir is None:
            return ds.decode_frames(ref.episode, key, self._timestamps[e])
        path = self.frame_cache_dir / self.ids[ref.dataset] / key / f"episode_{ref.episode:06d}.npy"
        cached = self._frame_cache.get((e, key))
        if cached is not None:
            return cached
        if not path.is_file():
            frames = ds.decode_frames(ref.episode, key, self._timestamps[e])
            atomic_write(path, lambda f: np.save(f, frames))
        frames = np.load(path, mmap_mode="r")
        if len(self._frame_cache) > 8:
            self._frame_cache.clear()
        self._frame_cache[(e, key)] = frames
        return frames

    def episode_slots(self) -> list[int]:
        return list(range(len(self._timestamps)))

    def episode_sample_indices(self, e: int) -> np.ndarray:
        return np.flatnonzero(self.index[:, 0] == e)

    # ---------------------------------------------------------------------------------------- statistics
    def normalization(self) -> tuple[NormalizationStats, NormalizationStats]:
        """State and action statistics over these episodes' frames (stored with the checkpoint)."""
        return (NormalizationStats.from_data(np.concatenate(self._state)),
                NormalizationStats.from_data(np.concatenate(self._action)))


def check_datasets(datasets: list[LeRobotV3Dataset], camera_keys: list[str]) -> tuple[int, int]:
    """The recorded frame size (H, W) shared by every camera of every dataset; ConfigError on any mismatch."""
    hw = None
    for ds in datasets:
        for key, shape in (("observation.state", (ACTION_DIM,)), ("action", (ACTION_DIM,))):
            if key not in ds.features:
                raise ConfigError(f"{ds.root}: no {key!r} feature: not a FR3 + Inspire demonstration dataset")
            if tuple(ds.features[key]["shape"]) != shape:
                raise ConfigError(f"{ds.root}: {key} has shape {tuple(ds.features[key]['shape'])}, the policy "
                                  f"needs {shape}")
        for key in camera_keys:
            if key not in ds.video_keys:
                raise ConfigError(f"{ds.root}: no camera feature {key!r} (it has: {', '.join(ds.video_keys)})")
            h, w = ds.features[key]["shape"][:2]
            if hw is None:
                hw = (int(h), int(w))
            elif (int(h), int(w)) != hw:
                raise ConfigError(f"{ds.root}: {key} frames are {h}x{w}, other views are {hw[0]}x{hw[1]}: one "
                                  "policy sees one frame size")
    if hw is None:
        raise ConfigError("the datasets have no camera features")
    return hw


def load_datasets(roots: list[str]) -> list[LeRobotV3Dataset]:
    out = []
    for root in roots:
        if not (Path(root) / "meta" / "info.json").is_file():
            raise ConfigError(f"{root} is not a LeRobot v3.0 dataset (no meta/info.json)")
        out.append(LeRobotV3Dataset(root))
    return out


def train_val_split(datasets: list[LeRobotV3Dataset], val_fraction: float, val_max: int,
                    keep: list[list[int]] | None = None) -> tuple[list[EpisodeRef], list[EpisodeRef]]:
    """Each dataset's episodes split into training and validation (the last ones, ``split_episodes``);
    ``keep``: per dataset, the episodes to use (default: all of them)."""
    train, val = [], []
    for d, ds in enumerate(datasets):
        episodes = list(range(ds.num_episodes)) if keep is None else list(keep[d])
        tr, va = split_episodes(len(episodes), val_fraction, val_max)
        train += [EpisodeRef(d, episodes[i]) for i in tr]
        val += [EpisodeRef(d, episodes[i]) for i in va]
    return train, val


def clear_episodes(datasets: list[LeRobotV3Dataset], min_clearance: float, log=None) -> list[list[int]]:
    """Per dataset, the episodes whose arm actions all stay at least ``min_clearance`` rad inside the FR3 safety
    gate's joint limits (``training.recording.action_margin``); ``log`` gets a line per dataset that lost some."""
    from training.recording.action_margin import episode_clearances

    keep = []
    for ds in datasets:
        clearance = episode_clearances(ds)
        kept = [e for e in range(ds.num_episodes) if clearance[e] >= min_clearance]
        if log is not None and len(kept) < ds.num_episodes:
            log(f"data: {ds.root}: left out {ds.num_episodes - len(kept)} of {ds.num_episodes} episode(s) that come "
                f"within {min_clearance:g} rad of the FR3 gate's joint limits")
        keep.append(kept)
    return keep


def collate(items: list[dict]) -> dict:
    out = {k: torch.stack([it[k] for it in items]) for k in ("state", "actions", "action_mask")}
    out["index"] = torch.tensor([it["index"] for it in items], dtype=torch.long)
    out["dataset"] = torch.tensor([it["dataset"] for it in items], dtype=torch.long)
    out["row"] = torch.tensor([it["row"] for it in items], dtype=torch.long)
    out["instruction"] = [it["instruction"] for it in items]
    if "images" in items[0]:
        out["images"] = torch.stack([it["images"] for it in items])
    return out
