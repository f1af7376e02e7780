"""MotionTokenizerConfig: the 1-D convolutional GRVQ VQ-VAE over 15-frame hand-motion chunks (paper A.1).

Token factorisation (per part, wrist and finger alike; matches jala_policy's MotionVocabConfig)::

    15 frames, edge-padded to 16  --(down_t = 2 stride-2 convs)-->  4 latent steps
    GroupedResidualVQ: groups = 2, num_quantizers = 8, codebook_size = 512 (per group and depth)
    tokens per part = groups x latent steps x quantizers = 2 x 4 x 8 = 64
    code id of the token at depth q with codebook entry c:  q * 512 + c   ->  ids 0 .. 8 * 512 - 1 = 4095

Token order inside a part (position p = 0..63): group, then time step, then quantizer depth, i.e.
``p = (g * steps + s) * num_quantizers + q``. A position of depth q only ever holds ids in
``[q * 512, (q + 1) * 512)`` (see :meth:`MotionTokenizerConfig.position_depth`). Part codes map onto the
backbone's vocabulary with ``MotionVocabulary.codes_to_ids(codes, "wrist" | "finger")``. The two groups share
the id range (group is implied by the position), as Being-H0 does.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np


class TokenizerConfigError(ValueError):
    pass


@dataclass
class MotionTokenizerConfig:
    chunk_frames: int = 15
    padded_frames: int = 16  # chunk edge-padded (last frame repeated) to a multiple of 2**down_t
    down_t: int = 2
    width: int = 512
    code_dim: int = 512
    res_depth: int = 3
    dilation_growth: int = 3
    groups: int = 2
    num_quantizers: int = 8
    codebook_size: int = 512
    commitment_weight: float = 0.02
    ema_decay: float = 0.99
    kmeans_init: bool = True
    dead_code_threshold: float = 2.0  # codes used fewer times (EMA count) are re-seeded from the batch
    # the vocabulary this must fill (jala_policy MotionVocabConfig): 64 tokens and 4096 codes per part
    tokens_per_part: int = 64
    codes_per_part: int = 4096

    def __post_init__(self):
        if self.padded_frames < self.chunk_frames or self.padded_frames % (2 ** self.down_t):
            raise TokenizerConfigError(f"padded_frames ({self.padded_frames}) must be >= chunk_frames and a multiple "
                                       f"of 2**down_t ({2 ** self.down_t})")
        if self.code_dim % self.groups:
            raise TokenizerConfigError(f"code_dim {self.code_dim} not divisible by groups {self.groups}")
        if self.tokens != self.tokens_per_part:
            raise TokenizerConfigError(
                f"groups x latent steps x quantizers = {self.groups} x {self.latent_steps} x {self.num_quantizers} "
                f"= {self.tokens} tokens, but the vocabulary needs {self.tokens_per_part} per part")
        if self.num_quantizers * self.codebook_size != self.codes_per_part:
            raise TokenizerConfigError(
                f"num_quantizers x codebook_size = {self.num_quantizers * self.codebook_size} codes, but the "
                f"vocabulary has {self.codes_per_part} per part")

    @property
    def latent_steps(self) -> int:
        return self.padded_frames // 2 ** self.down_t

    @property
    def tokens(self) -> int:
        return self.groups * self.latent_steps * self.num_quantizers

    def position_depth(self) -> np.ndarray:
        """(tokens,) quantizer depth q of each token position; its ids lie in [q*codebook_size, (q+1)*...)."""
        return np.arange(self.tokens) % self.num_quantizers

    def allowed_codes(self) -> np.ndarray:
        """bool (tokens, codes_per_part): which part code ids each position may hold."""
        depth = self.position_depth()
        code_depth = np.arange(self.codes_per_part) // self.codebook_size
        return depth[:, None] == code_depth[None, :]

    # ---------------------------------------------------------------------------------------- presets
    @classmethod
    def tiny(cls) -> "MotionTokenizerConfig":
        """Small widths for tests/CPU; the same token factorisation (64 tokens, 4096 codes). Faster codebook EMA
        and no dead-code re-seeding, since small batches use only a fraction of the 512 codes per step."""
        return cls(width=64, code_dim=32, res_depth=1, dilation_growth=3, ema_decay=0.9, dead_code_threshold=0.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MotionTokenizerConfig":
        try:
            return cls(**d)
        except TypeError as exc:
            raise TokenizerConfigError(f"invalid motion tokenizer config: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
