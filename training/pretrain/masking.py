"""Hybrid masking of masked chunk prediction (paper A.3).

For a sequence of N motion chunks (both hands interleaved in time):
- one chunk, drawn uniformly, is the main prediction target;
- chunks before it stay intact;
- inside the target, a ratio r is drawn uniformly from ``target_mask_ratios`` ({0.05, 0.15, ..., 0.95, 1.0})
  and round(r * n) of its n tokens (at least one) are masked, chosen uniformly without replacement;
- every token of the chunks after the target is masked independently with probability ``later_chunk_ratio``
  (5 %);
- video-only samples (no motion tokens) are masked completely: every token of every chunk.

Masks are drawn from a generator seeded by (seed, epoch, sample index), so a sample gets the same mask whichever
rank, worker or resumed run draws it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import MaskingConfig


@dataclass
class ChunkMasks:
    target: int                 # index of the target chunk
    ratio: float                # the target's drawn mask ratio (1.0 for video-only samples)
    masks: list[np.ndarray]     # per chunk: bool (tokens_per_chunk,) True = replaced by <mot_mask>


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), 0x4A414C41])


def hybrid_masks(num_chunks: int, tokens_per_chunk: int, has_motion: bool, config: MaskingConfig,
                 rng: np.random.Generator) -> ChunkMasks:
    if num_chunks < 1:
        raise ValueError("a pretraining sample needs at least one motion chunk")
    target = int(rng.integers(num_chunks))
    if not has_motion:
        return ChunkMasks(target, 1.0, [np.ones(tokens_per_chunk, dtype=bool) for _ in range(num_chunks)])
    ratio = float(config.target_mask_ratios[int(rng.integers(len(config.target_mask_ratios)))])
    masks = []
    for i in range(num_chunks):
        if i < target:
            m = np.zeros(tokens_per_chunk, dtype=bool)
        elif i == target:
            k = min(tokens_per_chunk, max(1, int(round(ratio * tokens_per_chunk))))
            m = np.zeros(tokens_per_chunk, dtype=bool)
            m[rng.choice(tokens_per_chunk, size=k, replace=False)] = True
        else:
            m = rng.random(tokens_per_chunk) < config.later_chunk_ratio
        masks.append(m)
    return ChunkMasks(target, ratio, masks)
