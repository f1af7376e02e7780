"""State/action normalisation statistics, stored with the checkpoint (``normalization.json``).

Min-max to [-1, 1] per dimension (the flow-matching noise is N(0, 1), so targets should be O(1)). Dimensions
whose range is (almost) zero map to 0 and back to their constant value.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

_EPS = 1e-6


@dataclass
class NormalizationStats:
    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        for name in ("min", "max", "mean", "std"):
            v = np.asarray(getattr(self, name), dtype=np.float64)
            if v.ndim != 1 or not np.all(np.isfinite(v)):
                raise ValueError(f"normalisation {name} must be a finite 1-D vector")
            setattr(self, name, v)
        if not (self.min.shape == self.max.shape == self.mean.shape == self.std.shape):
            raise ValueError("normalisation vectors differ in length")
        if np.any(self.max < self.min):
            raise ValueError("normalisation max < min")

    @classmethod
    def from_data(cls, data: np.ndarray) -> "NormalizationStats":
        data = np.asarray(data, dtype=np.float64).reshape(-1, np.shape(data)[-1])
        if not np.all(np.isfinite(data)):
            raise ValueError("cannot compute statistics of data with NaN/inf")
        return cls(data.min(0), data.max(0), data.mean(0), data.std(0))

    @classmethod
    def identity(cls, dim: int) -> "NormalizationStats":
        """Maps [-1, 1] to itself."""
        return cls(-np.ones(dim), np.ones(dim), np.zeros(dim), np.ones(dim))

    @property
    def dim(self) -> int:
        return int(self.min.shape[0])

    def _scale(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo = torch.as_tensor(self.min, dtype=like.dtype, device=like.device)
        hi = torch.as_tensor(self.max, dtype=like.dtype, device=like.device)
        return lo, hi

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self._scale(x)
        rng = hi - lo
        ok = rng > _EPS
        return torch.where(ok, 2.0 * (x - lo) / torch.where(ok, rng, torch.ones_like(rng)) - 1.0, torch.zeros_like(x))

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self._scale(x)
        return (x + 1.0) * 0.5 * (hi - lo) + lo

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("min", "max", "mean", "std")}

    @classmethod
    def from_dict(cls, d: dict) -> "NormalizationStats":
        return cls(**{k: np.asarray(d[k]) for k in ("min", "max", "mean", "std")})


@dataclass
class PolicyNormalizer:
    state: NormalizationStats
    action: NormalizationStats

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"state": self.state.to_dict(), "action": self.action.to_dict()}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "PolicyNormalizer":
        from .config import ConfigError, read_json_file

        d = read_json_file(path)
        try:
            return cls(NormalizationStats.from_dict(d["state"]), NormalizationStats.from_dict(d["action"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: invalid normalisation statistics: {exc!r}") from None
