"""PostTrainConfig: every setting of post-training (paper B.1), loadable from YAML.

Presets (``training/posttrain/configs/<name>.yaml`` hold the same settings, written out)
- ``paper``: the paper's recipe on the real sizes: InternVL3-2B + DINOv2-base from local weights, visual modules
  frozen, AdamW lr 1e-4, cosine decay with 5 % warm-up, global batch 128, 30k steps, gradient clipping 1.0,
  bf16 autocast on CUDA. Paper B.1 gives lr, schedule, batch and steps; betas (0.95, 0.999), weight decay 1e-5
  and eps 1e-8 are GR00T N1.5's fine-tuning defaults, whose head JALA follows.
- ``sim-small``: the same recipe on the ``small`` model (random weights) for the simulated tasks on a CPU:
  global batch 32, visual features cached, arm actions as offsets from the current joints, and inference from
  quarter-scale noise (``inference.noise_scale`` 0.25: the small head trained for a few thousand CPU steps leaves
  step-to-step noise in its chunks that the arm's safety gate refuses at the paper's full-scale noise; the
  measured sweep is in ``checkpoints/water_plant-jala-small/README.md``).
- ``tiny``: seconds-long runs for tests.

YAML layout mirrors the dataclasses::

    preset: sim-small        # optional: start from a preset, then override the keys given
    model: {init: small, config: {action_head: {num_layers: 4}}}
    data: {roots: [datasets/water_plant], val_fraction: 0.1}
    optim: {lr: 1.0e-4}
    run: {output_dir: runs/posttrain, max_steps: 6000}
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from embodiment import ACTION_DT
from jala_policy.config import PRESETS, ConfigError

from ..pretrain.config import OptimConfig as PretrainOptimConfig
from ..pretrain.config import _plain, read_yaml_mapping

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class ModelInit:
    """Where the policy starts: a model preset (``small``, ``tiny``, ``internvl3-2b``: pretrained InternVL3-2B and
    DINOv2 weights from the local directories named in ``config``) or the directory of an exported ``JalaPolicy``
    (e.g. ``training.pretrain.export`` of a pretraining run)."""

    init: str = "small"
    # JalaPolicyConfig fields to override (nested dicts per component), e.g. {backbone: {weights_dir: ...}}
    config: dict = field(default_factory=dict)
    load_weights: bool = True  # internvl3-2b: read the local weights (False: random, for timing only)
    freeze_vision: bool = True  # paper B.1: the vision tower + projector and the texture encoder stay frozen

    def __post_init__(self):
        if self.init not in PRESETS and not Path(self.init).expanduser().is_dir():
            raise ConfigError(f"model.init must be a preset ({', '.join(PRESETS)}) or an exported policy "
                              f"directory; {self.init!r} is neither")
        if not isinstance(self.config, dict):
            raise ConfigError("model.config must be a mapping of JalaPolicyConfig fields")

    @property
    def is_preset(self) -> bool:
        return self.init in PRESETS


@dataclass
class DataConfig:
    roots: list = field(default_factory=list)  # LeRobot v3.0 dataset directories (one task or many)
    # camera features used as the policy's views, in order; None: every video feature of the first dataset, in
    # the order its info.json lists them (the order the recorder writes the task's cameras)
    camera_keys: list | None = None
    val_fraction: float = 0.1  # share of each dataset's episodes held out for validation (the last ones)
    val_episodes_max: int = 5  # at most this many validation episodes per dataset
    frame_stride: int = 1  # every n-th frame of an episode is a training sample
    frame_cache_dir: str | None = None  # on-disk cache of decoded frames (default: <output_dir>/cache)
    cache_features: bool = True  # cache the frozen visual modules' outputs per frame (needs freeze_vision)
    num_workers: int = 2  # DataLoader workers decoding video ahead of training (0: in the training process)
    # leave out episodes whose arm actions come closer than this (rad) to the FR3 gate's joint limits: a policy
    # imitating a demo that runs along a limit sends chunks the gate refuses (0: keep every episode)
    min_clearance: float = 0.0

    def __post_init__(self):
        if isinstance(self.roots, (str, Path)):
            self.roots = [str(self.roots)]
        self.roots = [str(r) for r in self.roots]
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("data.val_fraction must be in [0, 1)")
        if not (math.isfinite(self.min_clearance) and self.min_clearance >= 0):
            raise ConfigError(f"data.min_clearance must be a finite number of rad >= 0, got {self.min_clearance}")
        if self.frame_stride < 1 or self.num_workers < 0 or self.val_episodes_max < 0:
            raise ConfigError("data.frame_stride must be >= 1, data.num_workers and val_episodes_max >= 0")


@dataclass
class OptimConfig(PretrainOptimConfig):
    """Pretraining's optimiser settings (same checks, same gradient accumulation) with B.1's defaults."""

    lr: float = 1e-4
    weight_decay: float = 1e-5
    betas: tuple[float, float] = (0.95, 0.999)
    # Exponential moving average of the trained weights, used by validation and the exports (openpi keeps one at
    # 0.99). 0: off, the paper's recipe (B.1 names none).
    ema_decay: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"optim.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass
class RunConfig:
    output_dir: str = "runs/posttrain"
    max_steps: int = 30000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = True  # autocast on CUDA
    distributed: str = "ddp"  # ddp | fsdp (the 2B model on 8 x 80 GB)
    log_every: int = 10
    save_every: int = 1000
    val_every: int = 1000
    export_every: int = 0  # also export a JalaPolicy every n steps (learning curves); 0: at the end only
    keep_checkpoints: int = 2
    resume: str | None = "auto"  # "auto": the newest checkpoint in output_dir, a path, or None
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self):
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"run.device must be auto, cpu or cuda, got {self.device!r}")
        if self.distributed not in ("ddp", "fsdp"):
            raise ConfigError(f"run.distributed must be ddp or fsdp, got {self.distributed!r}")
        if self.max_steps < 1 or self.save_every < 1 or self.val_every < 1 or self.log_every < 1:
            raise ConfigError("run.max_steps, save_every, val_every and log_every must be >= 1")


_SECTIONS = {"model": ModelInit, "data": DataConfig, "optim": OptimConfig, "run": RunConfig}
PRESET_NAMES = ("paper", "sim-small", "tiny")


@dataclass
class PostTrainConfig:
    model: ModelInit = field(default_factory=ModelInit)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    action_dt: float = ACTION_DT  # the action rate the chunks are resampled to (15 Hz)

    def __post_init__(self):
        if self.data.cache_features and not self.model.freeze_vision:
            raise ConfigError("data.cache_features needs model.freeze_vision: trained visual modules change their "
                              "outputs every step")

    @classmethod
    def from_preset(cls, name: str) -> "PostTrainConfig":
        if name == "paper":
            return cls(model=ModelInit(init="internvl3-2b", config={
                           "backbone": {"weights_dir": "weights/InternVL3-2B-hf"},
                           "perceiver": {"encoder_weights_dir": "weights/dinov2-base"}}),
                       data=DataConfig(num_workers=8, cache_features=False),
                       optim=OptimConfig(per_device_batch_size=16, global_batch_size=128),
                       run=RunConfig(output_dir="runs/posttrain-paper", max_steps=30000))
        if name == "sim-small":
            return cls(model=ModelInit(init="small", config={"arm_actions": "relative",
                                                             "inference": {"noise_scale": 0.25}}),
                       data=DataConfig(num_workers=2),
                       optim=OptimConfig(per_device_batch_size=32, global_batch_size=32),
                       run=RunConfig(output_dir="runs/posttrain-small", max_steps=6000, save_every=500,
                                     val_every=500, bf16=False))
        if name == "tiny":
            return cls(model=ModelInit(init="tiny"),
                       data=DataConfig(num_workers=0),
                       optim=OptimConfig(lr=1e-3, per_device_batch_size=4, global_batch_size=8),
                       run=RunConfig(output_dir="runs/posttrain-tiny", max_steps=20, save_every=10, val_every=10,
                                     log_every=1, bf16=False, progress=False))
        raise ConfigError(f"unknown post-training preset {name!r} ({' | '.join(PRESET_NAMES)})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PostTrainConfig":
        d = dict(d or {})
        preset = d.pop("preset", None)
        base = cls.from_preset(preset) if preset else cls()
        unknown = set(d) - set(_SECTIONS) - {"action_dt"}
        if unknown:
            raise ConfigError(f"unknown post-training config section(s): {', '.join(sorted(unknown))}")
        out: dict[str, Any] = {}
        for name, klass in _SECTIONS.items():
            given = d.get(name) or {}
            if not isinstance(given, dict):
                raise ConfigError(f"'{name}' must be a mapping")
            vals = {**dataclasses.asdict(getattr(base, name)), **given}
            try:
                out[name] = klass(**vals)
            except TypeError as exc:
                raise ConfigError(f"invalid '{name}' section: {exc}") from None
        return cls(**out, action_dt=float(d.get("action_dt", base.action_dt)))

    @classmethod
    def load(cls, path: str | Path) -> "PostTrainConfig":
        """A YAML file, or the name of one of ``configs/`` (``paper``, ``sim-small``, ``tiny``)."""
        p = Path(path)
        if not p.is_file() and (CONFIG_DIR / f"{path}.yaml").is_file():
            p = CONFIG_DIR / f"{path}.yaml"
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist (or name one of: {', '.join(PRESET_NAMES)})")
        return cls.from_dict(read_yaml_mapping(p))

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(_plain(self.to_dict()), sort_keys=False))

    def total_steps(self) -> int:
        return int(self.run.max_steps)

    def warmup_steps(self) -> int:
        return int(math.ceil(self.optim.warmup_ratio * self.run.max_steps))

