"""Configuration dataclasses for the JALA policy: one per component, plus the presets.

Presets
- ``internvl3-2b``: the real sizes (InternViT-300M at 448 px -> 256 tokens per image, Qwen2.5-1.5B with 28
  layers; DINOv2-base texture encoder; DiT head 16 layers x 32 heads x 2048). Backbone weights are loaded from a
  local ``OpenGVLab/InternVL3-2B-hf`` directory.
- ``tiny``: the same architectures with random weights and small widths, for tests and CPU demos.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .action_chunk import ACTION_DIM

PRESETS = ("internvl3-2b", "tiny")


class ConfigError(ValueError):
    """A configuration value is invalid or inconsistent."""


@dataclass
class BackboneConfig:
    """The InternVL3 vision-language backbone (transformers' InternVLForConditionalGeneration)."""

    preset: str = "internvl3-2b"
    # Local directory of an ``OpenGVLab/InternVL3-2B-hf`` snapshot (config, safetensors, tokenizer). Needed to
    # load pretrained weights; not needed when building with random weights (tests, timing).
    weights_dir: str | None = None
    freeze_vision: bool = True  # post-training freezes the visual modules (paper B.1)
    # Size of the text vocabulary; the motion ids start right after it. Filled in when the backbone is first
    # built and saved with the checkpoint (the saved embedding matrix already includes the motion ids).
    text_vocab_size: int | None = None

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown backbone preset {self.preset!r}; known presets: {', '.join(PRESETS)}")


@dataclass
class MotionVocabConfig:
    """Motion tokens (paper A.1): per 15-frame chunk, 64 wrist + 64 finger tokens, 4096 codes per part."""

    chunk_frames: int = 15
    tokens_per_part: int = 64
    codes_per_part: int = 4096

    def __post_init__(self):
        for name in ("chunk_frames", "tokens_per_part", "codes_per_part"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"motion vocab {name} must be positive")


@dataclass
class PerceiverConfig:
    """Latent Action / Latent State Perceiver (paper A.2) over a texture-perceptive encoder (DINOv2)."""

    encoder_preset: str = "dinov2-base"  # "dinov2-base" (local weights dir) or "tiny" (random)
    encoder_weights_dir: str | None = None  # local ``facebook/dinov2-base`` directory
    encoder_image_size: int = 224
    num_latents: int = 16
    width: int = 768
    num_heads: int = 12
    num_layers: int = 2
    use_state_tokens: bool = True  # put LSP state latents of the current frame into the backbone sequence

    def __post_init__(self):
        if self.encoder_preset not in ("dinov2-base", "tiny"):
            raise ConfigError(f"unknown texture encoder preset {self.encoder_preset!r} (dinov2-base | tiny)")
        if self.width % self.num_heads:
            raise ConfigError(f"perceiver width {self.width} not divisible by {self.num_heads} heads")
        if self.num_layers < 1 or self.num_latents < 1:
            raise ConfigError("perceiver needs at least one layer and one latent")


@dataclass
class ActionHeadConfig:
    """GR00T N1.5-style flow-matching DiT head (paper B.1)."""

    num_layers: int = 16
    num_heads: int = 32
    hidden_size: int = 2048
    ff_mult: int = 4
    action_horizon: int = 16
    action_dim: int = ACTION_DIM
    state_dim: int = ACTION_DIM
    num_inference_steps: int = 4
    num_timestep_buckets: int = 1000
    # t ~ t_max * (1 - Beta(a, b)): more weight on noisy times, as GR00T N1.5 samples it.
    noise_beta_alpha: float = 1.5
    noise_beta_beta: float = 1.0
    t_max: float = 0.999

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"action head hidden {self.hidden_size} not divisible by {self.num_heads} heads")
        if self.num_layers < 2 or self.num_layers % 2:
            raise ConfigError("action head needs an even number (>= 2) of layers: cross/self attention alternate")
        if self.num_inference_steps < 1:
            raise ConfigError("num_inference_steps must be >= 1")
        if self.action_horizon < 1 or self.action_dim < 1 or self.state_dim < 1:
            raise ConfigError("action horizon, action dim and state dim must be positive")


@dataclass
class JalaPolicyConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    motion: MotionVocabConfig = field(default_factory=MotionVocabConfig)
    perceiver: PerceiverConfig = field(default_factory=PerceiverConfig)
    action_head: ActionHeadConfig = field(default_factory=ActionHeadConfig)
    num_views: int = 1  # camera views per observation (wipe_board uses 2)
    # The camera frame size the policy was trained on (H, W). Frames of another size are refused rather than
    # silently resized to a different aspect ratio. None accepts any size.
    input_image_hw: tuple[int, int] | None = None
    action_dt: float = 1.0 / 15.0  # seconds between consecutive actions of a chunk
    prompt_template: str = "{instruction}"

    def __post_init__(self):
        if self.num_views < 1:
            raise ConfigError("num_views must be >= 1")
        if self.action_dt <= 0:
            raise ConfigError("action_dt must be positive")
        if self.input_image_hw is not None:
            self.input_image_hw = tuple(int(v) for v in self.input_image_hw)
            if len(self.input_image_hw) != 2 or min(self.input_image_hw) <= 0:
                raise ConfigError(f"input_image_hw must be (height, width), got {self.input_image_hw}")

    # -------------------------------------------------------------------------------------------- presets
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "JalaPolicyConfig":
        if name == "internvl3-2b":
            cfg = cls()
        elif name == "tiny":
            cfg = cls(
                backbone=BackboneConfig(preset="tiny"),
                perceiver=PerceiverConfig(encoder_preset="tiny", encoder_image_size=28, num_latents=4, width=32,
                                          num_heads=4),
                action_head=ActionHeadConfig(num_layers=2, num_heads=4, hidden_size=64),
            )
        else:
            raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        for key, value in overrides.items():
            if not hasattr(cfg, key):
                raise ConfigError(f"JalaPolicyConfig has no field {key!r}")
            setattr(cfg, key, value)
        cfg.__post_init__()
        return cfg

    # ---------------------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "JalaPolicyConfig":
        d = dict(d)
        try:
            sub = {
                "backbone": BackboneConfig(**d.pop("backbone", {})),
                "motion": MotionVocabConfig(**d.pop("motion", {})),
                "perceiver": PerceiverConfig(**d.pop("perceiver", {})),
                "action_head": ActionHeadConfig(**d.pop("action_head", {})),
            }
            return cls(**sub, **d)
        except TypeError as exc:  # unknown or missing keys
            raise ConfigError(f"invalid JALA policy config: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
