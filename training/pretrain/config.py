"""PretrainConfig: every setting of JALA pretraining (paper A.3-A.4), loadable from YAML.

Presets
- ``paper``: the paper's settings on the real InternVL3-2B / DINOv2-base sizes (AdamW 3e-5, wd 0.05,
  betas (0.9, 0.95), 5 % warm-up + cosine, clip 1.0, 16 per device, effective batch 128, lambda 0.5,
  EMA alpha 0.999, bf16 autocast on GPU).
- ``tiny``: the same recipe on the tiny random-weight model and synthetic token data, for a CPU run in seconds.

YAML layout mirrors the dataclasses::

    preset: tiny            # optional: start from a preset, then override the keys given
    model: {backbone: {...}, perceiver: {...}, motion: {...}}   # jala_policy.JalaPolicyConfig fields
    data: {source: synthetic, num_samples: 64}
    optim: {lr: 3.0e-5}
    loss: {align_weight: 0.5}
    masking: {later_chunk_ratio: 0.05}
    run: {output_dir: runs/tiny, max_steps: 20}
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jala_policy.config import ConfigError, JalaPolicyConfig

# Target-chunk mask ratios of the hybrid masking scheme (A.3): "{0.05, 0.15, ..., 1.0}". Read as the step-0.1
# progression 0.05 .. 0.95 closed by 1.0 (a fully masked chunk, the inference condition): 11 values.
PAPER_TARGET_MASK_RATIOS = tuple(round(0.05 + 0.1 * k, 2) for k in range(10)) + (1.0,)


@dataclass
class DataConfig:
    # "synthetic": the in-package synthetic token generator (training.pretrain.data.SyntheticTokenDataset);
    # "jala": the on-disk dataset of training.data, tokenised with the GRVQ tokenizer of training.tokenizer.
    source: str = "synthetic"
    root: str | None = None                # dataset directory for source "jala"
    tokenizer_checkpoint: str | None = None  # GRVQ tokenizer checkpoint for source "jala" (None: untrained init)
    num_samples: int = 256                 # synthetic only
    num_time_chunks: int = 2               # synthetic only: 15-frame chunks per sample (per hand)
    video_only_fraction: float = 0.3       # synthetic only: share of wild video-only samples (paper: 29.1 %)
    image_hw: tuple[int, int] = (64, 64)   # frame size (synthetic: generated; jala: resized on load)
    max_chunks: int | None = 4             # jala only: time chunks per sequence window (None: whole sample)
    random_window: bool = True             # jala only: random window start per epoch when a sample is longer
    num_workers: int = 0
    shuffle: bool = True

    def __post_init__(self):
        if self.source not in ("synthetic", "jala"):
            raise ConfigError(f"data.source must be 'synthetic' or 'jala', got {self.source!r}")
        if self.source == "jala" and not self.root:
            raise ConfigError("data.source 'jala' needs data.root (a dataset directory written by training.data)")
        if not 0.0 <= self.video_only_fraction <= 1.0:
            raise ConfigError("data.video_only_fraction must be in [0, 1]")
        if self.max_chunks is not None and self.max_chunks < 1:
            raise ConfigError("data.max_chunks must be >= 1 or null")
        if self.num_samples < 1 or self.num_time_chunks < 1:
            raise ConfigError("data.num_samples and data.num_time_chunks must be >= 1")
        self.image_hw = tuple(int(v) for v in self.image_hw)


@dataclass
class MaskingConfig:
    """Hybrid masking (A.3)."""

    target_mask_ratios: tuple[float, ...] = PAPER_TARGET_MASK_RATIOS
    later_chunk_ratio: float = 0.05  # per-token masking probability in chunks after the target

    def __post_init__(self):
        self.target_mask_ratios = tuple(float(r) for r in self.target_mask_ratios)
        if not self.target_mask_ratios or any(not 0.0 < r <= 1.0 for r in self.target_mask_ratios):
            raise ConfigError("masking.target_mask_ratios must be a non-empty list of ratios in (0, 1]")
        if not 0.0 <= self.later_chunk_ratio <= 1.0:
            raise ConfigError("masking.later_chunk_ratio must be in [0, 1]")


@dataclass
class LossConfig:
    align_weight: float = 0.5          # lambda of L = L_MCP + lambda * L_Align
    align_distance: str = "cosine"     # "cosine" (1 - cos) or "mse"
    # Which chunks' predictive embeddings are aligned to their LAP latent action: the target chunk only, or
    # the target and every chunk after it (the chunks whose tokens are (partly) masked).
    align_chunks: str = "target"
    # Stop the alignment gradient into the LAP side (z treated as a fixed target). Off by default: the LAP
    # queries then learn from the alignment loss, which eq. 7 hands on to the LSP queries.
    align_stop_grad_lap: bool = False
    ema_alpha: float = 0.999
    # Decoupled update (eq. 6-7): LAP backbone and LSP queries are moved only by the EMA, not by the optimiser.
    ema_only_targets: bool = True

    def __post_init__(self):
        if self.align_distance not in ("cosine", "mse"):
            raise ConfigError(f"loss.align_distance must be 'cosine' or 'mse', got {self.align_distance!r}")
        if self.align_chunks not in ("target", "predicted"):
            raise ConfigError(f"loss.align_chunks must be 'target' or 'predicted', got {self.align_chunks!r}")
        if self.align_weight < 0:
            raise ConfigError("loss.align_weight must be >= 0")
        if not 0.0 <= self.ema_alpha < 1.0:
            raise ConfigError("loss.ema_alpha must be in [0, 1)")


@dataclass
class OptimConfig:
    lr: float = 3e-5
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_clip: float = 1.0
    per_device_batch_size: int = 16
    global_batch_size: int = 128  # = world_size * per_device_batch_size * grad_accum_steps

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip <= 0:
            raise ConfigError("optim.lr and optim.grad_clip must be > 0, optim.weight_decay >= 0")
        if not 0.0 <= self.warmup_ratio < 1.0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("optim.warmup_ratio must be in [0, 1) and optim.min_lr_ratio in [0, 1]")
        if self.per_device_batch_size < 1 or self.global_batch_size < 1:
            raise ConfigError("batch sizes must be >= 1")

    def grad_accum_steps(self, world_size: int) -> int:
        per_step = world_size * self.per_device_batch_size
        if self.global_batch_size % per_step:
            raise ConfigError(f"global batch {self.global_batch_size} is not a multiple of world size {world_size} "
                              f"x per-device batch {self.per_device_batch_size}")
        return self.global_batch_size // per_step


@dataclass
class RunConfig:
    output_dir: str = "runs/pretrain"
    max_steps: int | None = None   # optimiser steps; None: one epoch over the data (the paper: a single epoch)
    epochs: int = 1                # used when max_steps is None
    seed: int = 0
    device: str = "auto"           # auto | cpu | cuda
    bf16: bool = True              # bf16 autocast on CUDA (CPU always runs fp32)
    log_every: int = 1
    save_every: int = 500          # optimiser steps between checkpoints (and one at the end)
    keep_checkpoints: int = 2
    resume: str | None = "auto"    # "auto": latest checkpoint in output_dir if any; a path; or None
    tensorboard: bool = True
    progress: bool = True
    load_backbone_weights: bool = True  # read backbone.weights_dir / perceiver.encoder_weights_dir (real sizes)
    gradient_checkpointing: bool = False  # recompute the LLM's activations in backward (less memory)

    def __post_init__(self):
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"run.device must be auto, cpu or cuda, got {self.device!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("run.max_steps must be >= 1")
        if self.save_every < 1 or self.log_every < 1 or self.keep_checkpoints < 1:
            raise ConfigError("run.save_every, run.log_every and run.keep_checkpoints must be >= 1")


_SECTIONS = {"data": DataConfig, "masking": MaskingConfig, "loss": LossConfig, "optim": OptimConfig,
             "run": RunConfig}


@dataclass
class PretrainConfig:
    model: JalaPolicyConfig = field(default_factory=JalaPolicyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        n = self.model.motion.tokens_per_part * 2
        if n % self.model.perceiver.num_latents:
            raise ConfigError(f"the {n} motion tokens of a chunk must split evenly into the perceiver's "
                              f"{self.model.perceiver.num_latents} latents for the alignment loss")

    # ------------------------------------------------------------------------------------------- presets
    @classmethod
    def from_preset(cls, name: str) -> "PretrainConfig":
        if name == "paper":
            cfg = cls(model=JalaPolicyConfig.from_preset("internvl3-2b"),
                      data=DataConfig(source="jala", root="data/unihand", tokenizer_checkpoint="runs/motion-tokenizer",
                                      image_hw=(448, 448), num_workers=8))
            cfg.model.backbone.freeze_vision = False
            cfg.model.backbone.weights_dir = "weights/InternVL3-2B-hf"
            cfg.model.perceiver.encoder_weights_dir = "weights/dinov2-base"
            return cfg
        if name == "tiny":
            model = JalaPolicyConfig.from_preset("tiny")
            model.backbone.freeze_vision = False
            return cls(model=model,
                       data=DataConfig(source="synthetic", num_samples=64, num_time_chunks=2, image_hw=(64, 64)),
                       optim=OptimConfig(lr=1e-3, per_device_batch_size=4, global_batch_size=8),
                       loss=LossConfig(ema_alpha=0.99),
                       run=RunConfig(output_dir="runs/pretrain-tiny", max_steps=20, save_every=10, bf16=False,
                                     load_backbone_weights=False))
        raise ConfigError(f"unknown pretrain preset {name!r} (paper | tiny)")

    # --------------------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, base: "PretrainConfig | None" = None) -> "PretrainConfig":
        d = dict(d or {})
        preset = d.pop("preset", None)
        if base is None:
            base = cls.from_preset(preset) if preset else cls()
        elif preset:
            raise ConfigError("'preset' can only be given once")
        unknown = set(d) - {"model", *_SECTIONS}
        if unknown:
            raise ConfigError(f"unknown pretrain config section(s): {', '.join(sorted(unknown))}")
        out = {}
        model_d = base.model.to_dict()
        for sub, vals in (d.get("model") or {}).items():
            if isinstance(vals, dict) and isinstance(model_d.get(sub), dict):
                model_d[sub] = {**model_d[sub], **vals}
            else:
                model_d[sub] = vals
        out["model"] = JalaPolicyConfig.from_dict(model_d)
        for name, klass in _SECTIONS.items():
            vals = {**dataclasses.asdict(getattr(base, name)), **(d.get(name) or {})}
            try:
                out[name] = klass(**vals)
            except TypeError as exc:
                raise ConfigError(f"invalid '{name}' section: {exc}") from exc
        return cls(**out)

    @classmethod
    def load(cls, path: str | Path) -> "PretrainConfig":
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        return cls.from_dict(read_yaml_mapping(p))

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(_plain(self.to_dict()), sort_keys=False))

    # --------------------------------------------------------------------------------------------- derived
    def total_steps(self, num_samples: int) -> int:
        if self.run.max_steps is not None:
            return self.run.max_steps
        return max(1, math.floor(num_samples * self.run.epochs / self.optim.global_batch_size))


def read_yaml_mapping(path: Path) -> dict:
    """The YAML mapping in ``path`` ({} for an empty file); ConfigError naming the file otherwise."""
    try:
        d = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path} must hold a YAML mapping")
    return d


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
