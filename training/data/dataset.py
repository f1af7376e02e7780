"""torch Dataset / sampler / loader over a dataset in the training/data format (see format.py, FORMAT.md).

Public API (stable; used by training/pretrain and the tokenizer trainer)

``DataConfig(root, image_size=(224, 224), chunk_frames=15, max_chunks=None, random_window=False,
splits=("train",), domains=None)``

``HandVideoDataset(config)[i]`` -> dict for one sample::

    id, dataset, domain ("lab"|"wild"), split, instruction: str;  fps: float
    has_motion:   bool (False for video-only samples)
    num_chunks:   int n (>= 1; 15-frame chunks of the window)
    frame_index:  LongTensor (n+1,)   video frame index of each chunk boundary
    frames:       uint8 (n+1, H, W, 3) chunk-boundary frames resized to config.image_size; chunk i's
                  boundary pair (v_t, v_{t+delta}) is frames[i], frames[i+1]
    motion:       float32 (2, n, 15, 99) per hand (0 = left, 1 = right) motion chunks, or None (video-only)
    motion_valid: bool (2, n, 15) the hand is annotated in that frame (all False for video-only)
    chunk_valid:  bool (2, n) every frame of that hand's chunk is annotated (what the tokenizer can encode)
    joints:       float32 (2, n, 15, 21, 3) when the motion file has joints, else None

``collate_samples(list_of_samples)`` -> batch dict: the same keys, tensors padded to the batch's largest n:
frames (B, N+1, H, W, 3), frame_valid (B, N+1), motion (B, 2, N, 15, 99) (zeros where absent),
motion_valid (B, 2, N, 15), chunk_valid (B, 2, N), chunk_mask (B, N) (chunk exists), num_chunks (B,),
has_motion (B,) bool, fps (B,); strings as lists; joints (B, 2, N, 15, 21, 3) or None.

``MixedSampler(dataset, motion_fraction, num_samples=None, seed=0, rank=0, world_size=1)``: each epoch
(``set_epoch``) draws exactly round(motion_fraction * num_samples) motion-labelled and the rest video-only
samples, shuffled, then takes this rank's share (rank::world_size) for DDP.

``make_loader(dataset, batch_size, motion_fraction=None, ...)`` -> DataLoader with the sampler and collate.

``iter_motion_chunks(root, stride=15, splits=("train",))`` -> float32 (N, 15, 99) array of every fully
annotated single-hand 15-frame window (for the motion tokenizer).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .format import DOMAINS, SPLITS, DataFormatError, FrameSource, SampleRecord, load_index, load_motion
from .hand import MOTION_DIM


@dataclass
class DataConfig:
    root: str = ""
    image_size: tuple[int, int] = (224, 224)  # (H, W) of the yielded frames
    chunk_frames: int = 15
    max_chunks: int | None = None  # chunks per sample window (None: all chunks of the sample)
    random_window: bool = False  # with max_chunks: a random window start (changes with set_epoch) vs start 0
    splits: tuple[str, ...] | None = ("train",)  # None: all splits
    domains: tuple[str, ...] | None = None  # None: lab and wild
    seed: int = 0

    def __post_init__(self):
        self.image_size = tuple(int(v) for v in self.image_size)
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ValueError(f"image_size must be (height, width), got {self.image_size}")
        if self.chunk_frames <= 0 or (self.max_chunks is not None and self.max_chunks <= 0):
            raise ValueError("chunk_frames and max_chunks must be positive")
        if self.splits is not None:
            self.splits = tuple(self.splits)
            if set(self.splits) - set(SPLITS):
                raise ValueError(f"splits must be among {SPLITS}, got {self.splits}")
        if self.domains is not None:
            self.domains = tuple(self.domains)
            if set(self.domains) - set(DOMAINS):
                raise ValueError(f"domains must be among {DOMAINS}, got {self.domains}")


def resize_frame(img: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """uint8 HxWx3 -> uint8 (H', W', 3) with bilinear resampling (PIL); no-op when already that size."""
    if img.shape[:2] == tuple(size_hw):
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size_hw[1], size_hw[0]), Image.BILINEAR))


class HandVideoDataset(Dataset):
    """Samples of a dataset directory; see the module docstring for what an item holds."""

    def __init__(self, config: DataConfig | str | os.PathLike, **overrides):
        if not isinstance(config, DataConfig):
            config = DataConfig(root=str(config), **overrides)
        elif overrides:
            raise TypeError("pass overrides only with a root path, not with a DataConfig")
        self.config = config
        records = load_index(config.root)
        c = config.chunk_frames
        short = [r.id for r in records if r.num_frames < c]
        if short:
            raise DataFormatError(f"{len(short)} sample(s) are shorter than one {c}-frame chunk, e.g. {short[0]!r}")
        self.records: list[SampleRecord] = [
            r for r in records
            if (config.splits is None or r.split in config.splits)
            and (config.domains is None or r.domain in config.domains)]
        if not self.records:
            raise DataFormatError(f"{config.root}: no samples in splits {config.splits} / domains {config.domains}")
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def motion_indices(self) -> list[int]:
        return [i for i, r in enumerate(self.records) if r.has_motion]

    @property
    def video_only_indices(self) -> list[int]:
        return [i for i, r in enumerate(self.records) if not r.has_motion]

    def _window(self, idx: int, total: int) -> tuple[int, int]:
        n = total if self.config.max_chunks is None else min(total, self.config.max_chunks)
        start = 0
        if self.config.random_window and total > n:
            rng = np.random.default_rng([self.config.seed, self.epoch, idx])
            start = int(rng.integers(0, total - n + 1))
        return start, n

    def __getitem__(self, idx: int) -> dict:
        rec = self.records[idx]
        c = self.config.chunk_frames
        first, n = self._window(idx, rec.num_frames // c)
        f0 = first * c
        bounds = [f0 + i * c for i in range(n)] + [min(f0 + n * c, rec.num_frames - 1)]
        src = FrameSource(rec)
        try:
            frames = np.stack([resize_frame(src.read(i), self.config.image_size) for i in bounds])
        finally:
            src.close()
        out = {"id": rec.id, "dataset": rec.dataset, "domain": rec.domain, "split": rec.split,
               "instruction": rec.instruction, "fps": rec.fps, "has_motion": rec.has_motion, "num_chunks": n,
               "frame_index": torch.tensor(bounds, dtype=torch.long), "frames": torch.from_numpy(frames),
               "motion": None, "joints": None,
               "motion_valid": torch.zeros((2, n, c), dtype=torch.bool),
               "chunk_valid": torch.zeros((2, n), dtype=torch.bool)}
        if rec.has_motion:
            hm = load_motion(rec)
            sl = slice(f0, f0 + n * c)
            out["motion"] = torch.from_numpy(hm.motion[:, sl].reshape(2, n, c, MOTION_DIM).copy())
            out["motion_valid"] = torch.from_numpy(hm.valid[:, sl].reshape(2, n, c).copy())
            out["chunk_valid"] = out["motion_valid"].all(-1)
            if hm.joints is not None:
                out["joints"] = torch.from_numpy(hm.joints[:, sl].reshape(2, n, c, *hm.joints.shape[2:]).copy())
        return out


def collate_samples(samples: list[dict]) -> dict:
    """Batch samples of HandVideoDataset, padding the chunk axis (see the module docstring)."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    b = len(samples)
    n_max = max(s["num_chunks"] for s in samples)
    c = samples[0]["motion_valid"].shape[-1]
    h, w = samples[0]["frames"].shape[1:3]
    frames = torch.zeros((b, n_max + 1, h, w, 3), dtype=torch.uint8)
    frame_valid = torch.zeros((b, n_max + 1), dtype=torch.bool)
    motion = torch.zeros((b, 2, n_max, c, MOTION_DIM))
    motion_valid = torch.zeros((b, 2, n_max, c), dtype=torch.bool)
    chunk_mask = torch.zeros((b, n_max), dtype=torch.bool)
    frame_index = torch.full((b, n_max + 1), -1, dtype=torch.long)
    labelled = [s for s in samples if s["has_motion"]]
    has_joints = bool(labelled) and all(s["joints"] is not None for s in labelled)
    joints = torch.zeros((b, 2, n_max, c, 21, 3)) if has_joints else None
    for i, s in enumerate(samples):
        n = s["num_chunks"]
        frames[i, : n + 1] = s["frames"]
        frame_valid[i, : n + 1] = True
        frame_index[i, : n + 1] = s["frame_index"]
        chunk_mask[i, :n] = True
        motion_valid[i, :, :n] = s["motion_valid"]
        if s["motion"] is not None:
            motion[i, :, :n] = s["motion"]
            if joints is not None:
                joints[i, :, :n] = s["joints"]
    return {"frames": frames, "frame_valid": frame_valid, "frame_index": frame_index, "motion": motion,
            "motion_valid": motion_valid, "chunk_valid": motion_valid.all(-1) & chunk_mask[:, None],
            "chunk_mask": chunk_mask, "joints": joints,
            "num_chunks": torch.tensor([s["num_chunks"] for s in samples]),
            "has_motion": torch.tensor([s["has_motion"] for s in samples]),
            "fps": torch.tensor([s["fps"] for s in samples], dtype=torch.float32),
            "instruction": [s["instruction"] for s in samples], "domain": [s["domain"] for s in samples],
            "dataset": [s["dataset"] for s in samples], "id": [s["id"] for s in samples],
            "split": [s["split"] for s in samples]}


class MixedSampler(Sampler[int]):
    """Mixes motion-labelled and video-only samples at a fixed fraction (exact per epoch); DDP-aware."""

    def __init__(self, dataset: HandVideoDataset, motion_fraction: float, num_samples: int | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        if not 0.0 <= motion_fraction <= 1.0:
            raise ValueError(f"motion_fraction must be in [0, 1], got {motion_fraction}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid rank {rank} for world_size {world_size}")
        self.motion_pool = np.array(dataset.motion_indices, dtype=np.int64)
        self.video_pool = np.array(dataset.video_only_indices, dtype=np.int64)
        self.total = int(num_samples) if num_samples is not None else len(dataset)
        self.n_motion = int(round(motion_fraction * self.total))
        self.n_video = self.total - self.n_motion
        if self.n_motion and not len(self.motion_pool):
            raise ValueError(f"motion_fraction {motion_fraction} needs motion-labelled samples, the dataset has none")
        if self.n_video and not len(self.video_pool):
            raise ValueError(f"motion_fraction {motion_fraction} < 1 needs video-only samples, the dataset has none "
                             "(use motion_fraction=1.0)")
        self.motion_fraction = motion_fraction
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @staticmethod
    def _draw(pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """k items: whole shuffled passes over the pool (each item equally often), then a partial pass."""
        if k == 0:
            return pool[:0]
        reps = math.ceil(k / len(pool))
        return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:k]

    def epoch_indices(self) -> np.ndarray:
        """All ranks' indices of this epoch (before sharding)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        idx = np.concatenate([self._draw(self.motion_pool, self.n_motion, rng),
                              self._draw(self.video_pool, self.n_video, rng)])
        return rng.permutation(idx)

    def __iter__(self):
        idx = self.epoch_indices()
        per_rank = self.total // self.world_size  # equal share per rank (DDP needs equal step counts)
        return iter(idx[self.rank::self.world_size][:per_rank].tolist())

    def __len__(self) -> int:
        return self.total // self.world_size


def make_loader(dataset: HandVideoDataset, batch_size: int, motion_fraction: float | None = None, *,
                num_samples: int | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                num_workers: int = 0, drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
    """DataLoader with a MixedSampler (motion_fraction None: the dataset's own proportion) and collate."""
    if motion_fraction is None:
        motion_fraction = len(dataset.motion_indices) / len(dataset)
    sampler = MixedSampler(dataset, motion_fraction, num_samples=num_samples, seed=seed, rank=rank,
                           world_size=world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_samples,
                      num_workers=num_workers, drop_last=drop_last, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0)


def iter_motion_chunks(root: str | os.PathLike, stride: int = 15, chunk_frames: int = 15,
                       splits: tuple[str, ...] | None = ("train",)) -> np.ndarray:
    """(N, chunk_frames, 99) float32: every fully annotated single-hand window with the given stride."""
    if stride <= 0:
        raise ValueError("stride must be positive")
    out = []
    for rec in load_index(root):
        if not rec.has_motion or (splits is not None and rec.split not in splits):
            continue
        hm = load_motion(rec)
        for h in range(2):
            for s in range(0, rec.num_frames - chunk_frames + 1, stride):
                if hm.valid[h, s: s + chunk_frames].all():
                    out.append(hm.motion[h, s: s + chunk_frames])
    if not out:
        raise DataFormatError(f"{Path(root)}: no fully annotated {chunk_frames}-frame motion window in splits {splits}")
    return np.stack(out).astype(np.float32)
