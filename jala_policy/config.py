"""Configuration dataclasses for the JALA policy: one per component, plus the presets.

Presets
- ``internvl3-2b``: the real sizes (InternViT-300M at 448 px -> 256 tokens per image, Qwen2.5-1.5B with 28
  layers; DINOv2-base texture encoder; DiT head 16 layers x 32 heads x 2048). Backbone weights are loaded from a
  local ``OpenGVLab/InternVL3-2B-hf`` directory.
- ``small``: the same architectures, random weights, sized to be post-trained on the simulated tasks on a CPU
  (96 px backbone images, 4-layer 128-wide language model, 16 + 16 motion positions, 4-layer 128-wide head).
- ``tiny``: the same architectures with random weights and small widths, for tests and CPU demos.

Action-head presets (``ActionHeadConfig.from_preset``), see ``ACTION_HEAD_PRESETS``: ``paper`` (the default),
``gr00t-n1.5`` and ``tiny``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embodiment import ACTION_DIM, ACTION_DT, ACTION_HORIZON, HAND_SIDE

PRESETS = ("internvl3-2b", "small", "tiny")
HAND_SIDES = ("left", "right")  # index = the perceiver's hand head (jala_policy.perceiver.LEFT_HAND / RIGHT_HAND)
CHUNK_ATTENTION = ("bidirectional", "causal")

# DiT sizes of the flow-matching head.
# - paper: JALA B.1, "16 layers of 32-head attention blocks, and the hidden state dimension is 2048": 2048 wide
#   (head dim 64) cross-attending to the backbone's 1536-wide embeddings, 944 M parameters.
# - gr00t-n1.5: GR00T N1.5's own DiT width, 32 heads x 48 = 1536 (GR00T: about 550 M parameters with a 2048-wide
#   cross-attention context; here the context is still the backbone's 1536, so 16 x 1536 gives 541 M).
# JALA says it "directly follows" GR00T N1.5 yet states hidden 2048, the reverse of GR00T's 1536 wide / 2048
# context; the default keeps the paper's number.
ACTION_HEAD_PRESETS = {
    "paper": {"num_layers": 16, "num_heads": 32, "hidden_size": 2048},
    "gr00t-n1.5": {"num_layers": 16, "num_heads": 32, "hidden_size": 1536},
    "small": {"num_layers": 4, "num_heads": 4, "hidden_size": 128},
    "tiny": {"num_layers": 2, "num_heads": 4, "hidden_size": 64},
}


class ConfigError(ValueError):
    """A configuration value is invalid or inconsistent."""


def read_json_file(path) -> dict:
    """A JSON object from ``path``; ConfigError naming the file and the error's line / column when it is not
    valid JSON (a file cut short by a full disk, edited by hand)."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc.reason})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


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
    # Attention inside motion chunks. "bidirectional" (masked chunk prediction, paper A.3): the tokens of each
    # <mot>...</mot> chunk attend to each other in both directions and to everything before the chunk; all
    # other tokens (images, latents, instruction, across chunks) stay causal. "causal": the plain LM mask.
    chunk_attention: str = "bidirectional"

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown backbone preset {self.preset!r}; known presets: {', '.join(PRESETS)}")
        if self.chunk_attention not in CHUNK_ATTENTION:
            raise ConfigError(f"chunk_attention must be one of {', '.join(CHUNK_ATTENTION)}, "
                              f"got {self.chunk_attention!r}")


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
    """GR00T N1.5-style flow-matching DiT head (paper B.1). Default sizes: the ``paper`` preset."""

    num_layers: int = 16
    num_heads: int = 32
    hidden_size: int = 2048
    ff_mult: int = 4
    action_horizon: int = ACTION_HORIZON
    action_dim: int = ACTION_DIM
    state_dim: int = ACTION_DIM
    num_inference_steps: int = 4
    num_timestep_buckets: int = 1000
    # Training times as GR00T N1.5 samples them: t = (noise_s - s) / noise_s with s ~ Beta(alpha, beta), so
    # t = 0 (noise) is the most likely end; t lies in [1 - 1/noise_s, 1] (a sliver below 0 maps to bucket 0).
    noise_beta_alpha: float = 1.5
    noise_beta_beta: float = 1.0
    noise_s: float = 0.999

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"action head hidden {self.hidden_size} not divisible by {self.num_heads} heads")
        if self.num_layers < 2 or self.num_layers % 2:
            raise ConfigError("action head needs an even number (>= 2) of layers: cross/self attention alternate")
        if self.num_inference_steps < 1:
            raise ConfigError("num_inference_steps must be >= 1")
        if self.action_horizon < 1 or self.action_dim < 1 or self.state_dim < 1:
            raise ConfigError("action horizon, action dim and state dim must be positive")
        if not 0.0 < self.noise_s <= 1.0:
            raise ConfigError(f"noise_s must be in (0, 1], got {self.noise_s}")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "ActionHeadConfig":
        """A head of ``ACTION_HEAD_PRESETS[name]`` sizes; other fields at their defaults or ``overrides``."""
        if name not in ACTION_HEAD_PRESETS:
            raise ConfigError(f"unknown action head preset {name!r}; known presets: {', '.join(ACTION_HEAD_PRESETS)}")
        return cls(**{**ACTION_HEAD_PRESETS[name], **overrides})


HEAD_BACKENDS = ("torch", "onnxruntime")


@dataclass
class InferenceConfig:
    """How ``JalaPolicy.predict`` runs. The default is the eager reference path; ``fast`` and ``head_backend``
    change speed only, never the result beyond float rounding (tests/policy/test_fast_inference.py).

    fast: torch image preprocessing from one upload of the frames (fused normalisation, reused pinned staging
    buffer on CUDA), the instruction's token ids, block attention mask and token embeddings cached while the
    instruction is unchanged, index-based slot filling (no host syncs), and on CUDA the head's Euler steps
    replayed from one CUDA graph captured at load (``cuda_graph``). Training never uses it.
    head_backend: "torch" runs the DiT head in torch; "onnxruntime" runs the whole Euler sampler exported to
    ONNX (jala_policy.onnx_head) with ONNX Runtime.
    """

    fast: bool = False
    head_backend: str = "torch"
    # Scale of the sampler's starting noise A^0 ~ N(0, noise_scale^2 I) (every backend). 1.0 is the paper's
    # N(0, I); a lower "temperature" trades diversity for smoother chunks from a head whose velocity field is
    # not yet exact (the CPU-trained sim-small policies use 0.25).
    noise_scale: float = 1.0
    cuda_graph: bool = True  # fast path on CUDA only; ignored on other devices
    # Where the ONNX export of the head is written (onnxruntime backend); None: a temporary directory.
    onnx_path: str | None = None
    # Actions of each chunk the runtime executes before the next chunk takes over (the policy node and the
    # simulated evaluation read it; their own setting, where given, wins). None: the runtime's default,
    # embodiment.EXECUTE_STEPS. A checkpoint's best value is found by rolling it out (evaluation --execute-steps)
    # and written with ``python -m jala_policy.inference_settings``.
    execute_steps: int | None = None

    def __post_init__(self):
        if not 0.0 < self.noise_scale <= 1.0:
            raise ConfigError(f"inference.noise_scale must be in (0, 1], got {self.noise_scale}")
        if self.execute_steps is not None and (isinstance(self.execute_steps, bool)
                                               or not isinstance(self.execute_steps, int) or self.execute_steps < 1):
            raise ConfigError(f"inference.execute_steps must be a whole number >= 1 or null, "
                              f"got {self.execute_steps!r}")
        if self.head_backend not in HEAD_BACKENDS:
            raise ConfigError(f"head_backend must be one of {', '.join(HEAD_BACKENDS)}, got {self.head_backend!r}")


@dataclass
class JalaPolicyConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    motion: MotionVocabConfig = field(default_factory=MotionVocabConfig)
    perceiver: PerceiverConfig = field(default_factory=PerceiverConfig)
    action_head: ActionHeadConfig = field(default_factory=ActionHeadConfig)
    num_views: int = 1  # camera views per observation (wipe_board uses 2)
    # The camera frame size the policy was trained on (H, W). Frames of another aspect ratio are refused rather
    # than stretched; the same aspect ratio at another size is accepted (jala_policy.policy.same_aspect). None
    # accepts any size.
    input_image_hw: tuple[int, int] | None = None
    action_dt: float = ACTION_DT  # seconds between consecutive actions of a chunk
    prompt_template: str = "{instruction}"
    # How the head's arm columns are meant: "absolute" joint targets, or "relative": offsets from the arm joints
    # of the observation (proprio[:7]), normalised by the offsets' own range, which is far narrower than the
    # joints' (hand columns stay absolute). Needs the robot layout (action and state dims 13).
    arm_actions: str = "absolute"
    # The embodiment's hand: picks the Latent State Perceiver's hand head in predict and post-training alike.
    hand_side: str = HAND_SIDE
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self):
        if self.num_views < 1:
            raise ConfigError("num_views must be >= 1")
        if self.hand_side not in HAND_SIDES:
            raise ConfigError(f"hand_side must be one of {', '.join(HAND_SIDES)}, got {self.hand_side!r}")
        if self.action_dt <= 0:
            raise ConfigError("action_dt must be positive")
        if self.arm_actions not in ("absolute", "relative"):
            raise ConfigError(f"arm_actions must be 'absolute' or 'relative', got {self.arm_actions!r}")
        if self.arm_actions == "relative" and not (self.action_head.action_dim == ACTION_DIM
                                                   and self.action_head.state_dim == ACTION_DIM):
            raise ConfigError("arm_actions 'relative' needs the robot layout (action and state dims "
                              f"{ACTION_DIM})")
        if self.inference.execute_steps is not None and self.inference.execute_steps > self.action_head.action_horizon:
            raise ConfigError(f"inference.execute_steps {self.inference.execute_steps} is more than the chunk's "
                              f"{self.action_head.action_horizon} actions (action_head.action_horizon)")
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
                action_head=ActionHeadConfig.from_preset("tiny"),
            )
        elif name == "small":
            cfg = cls(
                backbone=BackboneConfig(preset="small"),
                motion=MotionVocabConfig(tokens_per_part=16, codes_per_part=512),
                perceiver=PerceiverConfig(encoder_preset="tiny", encoder_image_size=56, num_latents=8, width=64,
                                          num_heads=4),
                action_head=ActionHeadConfig.from_preset("small"),
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
        head = dict(d.pop("action_head", {}))
        if "t_max" in head:  # configs written before the field was named as GR00T N1.5 names it
            head["noise_s"] = head.pop("t_max")
        try:
            sub = {
                "backbone": BackboneConfig(**d.pop("backbone", {})),
                "motion": MotionVocabConfig(**d.pop("motion", {})),
                "perceiver": PerceiverConfig(**d.pop("perceiver", {})),
                "action_head": ActionHeadConfig(**head),
                "inference": InferenceConfig(**d.pop("inference", {})),
            }
            return cls(**sub, **d)
        except TypeError as exc:  # unknown or missing keys
            raise ConfigError(f"invalid JALA policy config: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
