"""Motion token vocabulary and sequence format (paper A.1).

The motion vocabulary is appended after the text vocabulary of the backbone, as contiguous ids:

    base + 0 : <mot>        opens a motion chunk
    base + 1 : </mot>       closes it
    base + 2 : <mot_mask>   the [MASK] placeholder of masked chunk prediction
    base + 3 : <mot_pad>    no-op / padding inside a motion block
    base + 4 : <latent>     a slot filled with a perceiver latent (LSP state / LAP action latents)
    base + 5 ...            wrist codes 0..codes_per_part-1
    then                    finger codes 0..codes_per_part-1

One 15-frame chunk of one hand is ``<mot> {64 wrist} {64 finger} </mot>`` (130 ids). For two hands the left
and right chunks are interleaved in time: L0 R0 L1 R1 ...
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .config import MotionVocabConfig

SPECIAL_TOKENS = ("<mot>", "</mot>", "<mot_mask>", "<mot_pad>", "<latent>")
PARTS = ("wrist", "finger")


@dataclass(frozen=True)
class MotionVocabulary:
    base_id: int  # first id after the text vocabulary
    config: MotionVocabConfig = field(default_factory=MotionVocabConfig)

    @property
    def mot_start(self) -> int:
        return self.base_id

    @property
    def mot_end(self) -> int:
        return self.base_id + 1

    @property
    def mask_id(self) -> int:
        return self.base_id + 2

    @property
    def pad_id(self) -> int:
        return self.base_id + 3

    @property
    def latent_id(self) -> int:
        return self.base_id + 4

    def part_offset(self, part: str) -> int:
        if part not in PARTS:
            raise ValueError(f"unknown motion part {part!r}; parts are {PARTS}")
        return self.base_id + len(SPECIAL_TOKENS) + PARTS.index(part) * self.config.codes_per_part

    @property
    def first_code_id(self) -> int:
        return self.part_offset("wrist")

    @property
    def size(self) -> int:
        """Number of ids the motion vocabulary adds."""
        return len(SPECIAL_TOKENS) + len(PARTS) * self.config.codes_per_part

    @property
    def end_id(self) -> int:
        """One past the last motion id."""
        return self.base_id + self.size

    @property
    def chunk_length(self) -> int:
        """Ids in one wrapped chunk: <mot> + wrist + finger + </mot>."""
        return 2 + len(PARTS) * self.config.tokens_per_part

    # ------------------------------------------------------------------------------------------ encode
    def codes_to_ids(self, codes: torch.Tensor | np.ndarray, part: str) -> torch.Tensor:
        codes = torch.as_tensor(codes, dtype=torch.long)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codes_per_part):
            raise ValueError(f"{part} codes must lie in [0, {self.config.codes_per_part})")
        return codes + self.part_offset(part)

    def ids_to_codes(self, ids: torch.Tensor, part: str) -> torch.Tensor:
        codes = torch.as_tensor(ids, dtype=torch.long) - self.part_offset(part)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codes_per_part):
            raise ValueError(f"ids are not {part} motion codes")
        return codes

    def wrap_chunk(self, wrist_codes, finger_codes) -> torch.Tensor:
        """``<mot>{wrist}{finger}</mot>`` for one hand's chunk. Codes: (64,) each, or (..., 64) batched."""
        w = self.codes_to_ids(wrist_codes, "wrist")
        f = self.codes_to_ids(finger_codes, "finger")
        n = self.config.tokens_per_part
        if w.shape[-1] != n or f.shape[-1] != n:
            raise ValueError(f"each part needs {n} tokens, got {w.shape[-1]} wrist and {f.shape[-1]} finger")
        lead = w.shape[:-1]
        start = torch.full((*lead, 1), self.mot_start, dtype=torch.long)
        end = torch.full((*lead, 1), self.mot_end, dtype=torch.long)
        return torch.cat([start, w, f, end], dim=-1)

    def masked_chunk(self, batch_size: int | None = None) -> torch.Tensor:
        """A fully masked chunk: ``<mot>`` + 128 x <mot_mask> + ``</mot>``."""
        body = torch.full((len(PARTS) * self.config.tokens_per_part,), self.mask_id, dtype=torch.long)
        ids = torch.cat([torch.tensor([self.mot_start]), body, torch.tensor([self.mot_end])])
        return ids if batch_size is None else ids.expand(batch_size, -1).clone()

    def interleave_hands(self, left_chunks: list[torch.Tensor] | None,
                         right_chunks: list[torch.Tensor] | None) -> torch.Tensor:
        """Interleave wrapped chunks of two hands along time: L0 R0 L1 R1 ... (a missing hand is skipped)."""
        left_chunks = left_chunks or []
        right_chunks = right_chunks or []
        if left_chunks and right_chunks and len(left_chunks) != len(right_chunks):
            raise ValueError("left and right hands need the same number of chunks to interleave")
        out = []
        for i in range(max(len(left_chunks), len(right_chunks))):
            if left_chunks:
                out.append(left_chunks[i])
            if right_chunks:
                out.append(right_chunks[i])
        if not out:
            raise ValueError("no motion chunks given")
        return torch.cat(out, dim=-1)

    def is_motion_code(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.first_code_id) & (ids < self.end_id)
