"""The post-training loop (paper B.1): the flow-matching DiT head and the language model learn robot action
chunks from demonstrations; the visual modules stay frozen.

One optimiser step = ``grad_accum_steps`` micro-batches of ``per_device_batch_size`` on each of ``world_size``
ranks. The step's loss is the mean squared flow-matching error over every unpadded action element of the global
batch, the element count summed over all micro-batches and ranks before the backward passes; the flow noise and
time of a sample are drawn from a generator seeded by (seed, epoch, sample index). So accumulation and DDP give
the same gradient as one process holding the whole global batch, and a resumed run continues bit for bit.

Outputs in ``run.output_dir``: ``checkpoints/`` (atomic, with optimiser, scheduler, RNG and data position, for
``--resume auto``), ``policy/`` (the exported ``JalaPolicy``, replaced atomically; ``export/step_<n>/`` when
``run.export_every`` is set), ``tensorboard/``, ``metrics.jsonl`` (training and validation figures),
``config.yaml``. With ``optim.ema_decay`` > 0, validation and the exports use the moving average of the weights;
the optimiser keeps stepping the raw ones.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset

from jala_policy.config import ConfigError, JalaPolicyConfig
from jala_policy.normalization import NormalizationStats, PolicyNormalizer
from jala_policy.policy import JalaPolicy

from .. import distributed as tdist
from ..batches import ResumableBatches, check_global_batch
from ..pretrain.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ..pretrain.data import ResumableDistributedSampler
from ..pretrain.trainer import WarmupCosine, _param_groups, resolve_device
from .config import PostTrainConfig
from .data import DemoChunkDataset, clear_episodes, collate, load_datasets, train_val_split
from .features import VisualFeatureCache

log = logging.getLogger(__name__)
VALIDATION_NOISE_KEY = 2**31 - 1  # the "epoch" seeding the validation samples' fixed noise (no training epoch)


# ------------------------------------------------------------------------------------------------ model
def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in (override or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_policy(config: PostTrainConfig, *, num_views: int, image_hw: tuple[int, int],
                 device: torch.device, dtype: torch.dtype = torch.float32) -> JalaPolicy:
    """The policy post-training starts from (``model.init``), set up for the datasets' views and frame size and
    the configured action rate. Initial weights depend on ``run.seed`` only (identical on every rank)."""
    m = config.model
    torch.manual_seed(config.run.seed)
    if m.is_preset:
        base = JalaPolicyConfig.from_preset(m.init).to_dict()
        cfg = JalaPolicyConfig.from_dict(_merge(base, {**m.config, "num_views": num_views,
                                                       "input_image_hw": list(image_hw),
                                                       "action_dt": config.action_dt}))
        policy = JalaPolicy.build(cfg, load_weights=m.load_weights, device=device, dtype=dtype)
    else:
        policy = JalaPolicy.from_pretrained(m.init, device=device, dtype=dtype)
        _override_exported(policy, m.config, m.init)
        if policy.config.num_views != num_views:
            # The views only repeat the image block of the prompt (every view goes through the same visual
            # modules): no weight depends on their number, so the policy learns the datasets' views from here.
            log.info("%s takes %d camera view(s); fine-tuning it on the datasets' %d", m.init,
                     policy.config.num_views, num_views)
            policy.config.num_views = num_views
        policy.config.input_image_hw = tuple(image_hw)
        policy.config.action_dt = config.action_dt
    # both ways, for a preset and for an exported policy (which loads with its config.json's freeze_vision)
    policy.freeze_vision(m.freeze_vision)
    return policy


# What ``model.config`` may change in a policy that post-training starts from an exported checkpoint: how its
# outputs are meant and how it is run. Everything else (the architecture, the frame size and rate, which come
# from the data) is fixed by the checkpoint's weights or set from the datasets.
EXPORTED_OVERRIDABLE = ("arm_actions", "inference", "prompt_template")
# Where a preset's pretrained weights are read from (paper.yaml names them): unused when the weights come from an
# exported checkpoint, so a config that names them still starts from one.
WEIGHT_LOCATIONS = {"backbone": "weights_dir", "perceiver": "encoder_weights_dir"}


def _override_exported(policy: JalaPolicy, overrides: dict, init: str) -> None:
    """Apply ``model.config`` to a policy loaded from an exported checkpoint (``EXPORTED_OVERRIDABLE``; a fixed
    field set to the checkpoint's own value and the weight locations of ``WEIGHT_LOCATIONS`` change nothing; a
    ConfigError names any other field rather than ignoring it)."""
    current = policy.config.to_dict()
    overrides = {k: ({n: x for n, x in v.items() if n != WEIGHT_LOCATIONS.get(k)} if isinstance(v, dict) else v)
                 for k, v in (overrides or {}).items()}
    overrides = {k: v for k, v in overrides.items() if k in EXPORTED_OVERRIDABLE
                 or (_merge(current[k], v) if isinstance(v, dict) and isinstance(current.get(k), dict) else v)
                 != current.get(k)}
    if not overrides:
        return
    fixed = sorted(set(overrides) - set(EXPORTED_OVERRIDABLE))
    if fixed:
        raise ConfigError(f"model.config sets {', '.join(fixed)}, which the exported policy {init} fixes; starting "
                          f"from a checkpoint, model.config may set only {', '.join(EXPORTED_OVERRIDABLE)}")
    cfg = JalaPolicyConfig.from_dict(_merge(current, overrides))
    for name in overrides:
        if getattr(policy.config, name) != getattr(cfg, name):
            log.info("%s: model.config changes %s from %r to %r", init, name, getattr(policy.config, name),
                     getattr(cfg, name))
        setattr(policy.config, name, getattr(cfg, name))


class _LossModule(torch.nn.Module):
    """DDP's view of the policy: forward = the summed flow-matching error of a micro-batch."""

    def __init__(self, policy: JalaPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, visual, instructions, state, actions, mask, noise, t):
        """visual: (image_embeds, texture) from the feature cache, or the uint8 images (B, views, H, W, 3)."""
        if isinstance(visual, torch.Tensor):
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.policy.config.backbone.freeze_vision):
                visual = self.policy.visual_features(visual)
        image_embeds, texture = visual
        return self.policy.loss_from_features(image_embeds, texture, instructions, state, actions, mask,
                                              noise=noise, t=t, reduction="sum")


class _Keyed(Dataset):
    """Takes the sampler's (epoch, index) keys; adds the epoch to the item (it seeds the sample's noise)."""

    def __init__(self, base: DemoChunkDataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        epoch, idx = key
        item = self.base[idx]
        item["epoch"] = epoch
        return item


def _keyed_collate(items: list[dict]) -> dict:
    out = collate(items)
    out["epoch"] = torch.tensor([it["epoch"] for it in items], dtype=torch.long)
    return out


def sample_noise(seed: int, epoch: int, index: int, horizon: int, dim: int, alpha: float, beta: float,
                 noise_s: float) -> tuple[np.ndarray, float]:
    """The flow noise (horizon, dim) and time of one sample: t = (noise_s - s) / noise_s, s ~ Beta(alpha, beta)
    (the head's training-time distribution), from a generator seeded by (seed, epoch, index)."""
    rng = np.random.default_rng([int(seed), int(epoch), int(index)])
    noise = rng.standard_normal((horizon, dim)).astype(np.float32)
    s = rng.beta(alpha, beta)
    return noise, float((noise_s - s) / noise_s)


# ----------------------------------------------------------------------------------------------- trainer
class WeightEMA:
    """Exponential moving average of the trained parameters: ``avg <- decay * avg + (1 - decay) * param`` after
    every optimiser step, kept in float32 beside the model. ``applied()`` puts the average into the model for a
    block (validation, export) and restores the raw weights after it; checkpoints keep both."""

    def __init__(self, named_params: list[tuple[str, torch.nn.Parameter]], decay: float):
        self.decay = float(decay)
        self.names = [n for n, _ in named_params]
        self.params = [p for _, p in named_params]
        self.average = [p.detach().float().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        for avg, p in zip(self.average, self.params):
            avg.lerp_(p.detach().float(), 1.0 - self.decay)

    @contextlib.contextmanager
    def applied(self):
        raw = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, avg in zip(self.params, self.average):
                p.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, r in zip(self.params, raw):
                    p.copy_(r)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.average))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if sorted(state) != sorted(self.names):
            raise ConfigError("the checkpoint's weight average holds other parameters than this model trains")
        self.average = [state[n].to(avg.device, avg.dtype).clone() for n, avg in zip(self.names, self.average)]


class PostTrainer:
    def __init__(self, config: PostTrainConfig):
        self.config = cfg = config
        self.dist = tdist.current()
        self.device = resolve_device(cfg.run.device, self.dist.local_rank)
        self.autocast = self.device.type == "cuda" and cfg.run.bf16
        self.output_dir = Path(cfg.run.output_dir)
        self.ckpt_dir = self.output_dir / "checkpoints"
        if not cfg.data.roots:
            raise ConfigError("no datasets: give data.roots (or --data DIR ...)")

        # data
        self.lerobot = load_datasets(cfg.data.roots)
        keep = clear_episodes(self.lerobot, cfg.data.min_clearance, log.info) if cfg.data.min_clearance else None
        train_eps, val_eps = train_val_split(self.lerobot, cfg.data.val_fraction, cfg.data.val_episodes_max, keep)
        if not train_eps:
            raise ConfigError("the datasets hold no episodes" + (
                f" that keep {cfg.data.min_clearance:g} rad from the joint limits (data.min_clearance)" if keep else ""))
        cache = cfg.data.frame_cache_dir
        horizon = self._horizon()
        common = dict(horizon=horizon, action_dt=cfg.action_dt, camera_keys=cfg.data.camera_keys,
                      frame_stride=cfg.data.frame_stride, frame_cache_dir=cache,
                      with_images=not cfg.data.cache_features)
        self.train_data = DemoChunkDataset(self.lerobot, train_eps, **common)
        self.val_data = DemoChunkDataset(self.lerobot, val_eps, **common) if val_eps else None

        # model
        self.policy = build_policy(cfg, num_views=self.train_data.num_views, image_hw=self.train_data.image_hw,
                                   device=self.device)
        head = self.policy.config.action_head
        if head.action_horizon != horizon:
            raise ConfigError(f"the policy's action horizon is {head.action_horizon}, the data's {horizon}")
        self.policy.set_normalization(*self.normalization_stats())
        self.features = None
        if cfg.data.cache_features:
            parts = [p for p in (self.train_data, self.val_data) if p is not None]
            if self.dist.is_main:  # computes what is missing; the other ranks then read the files it wrote
                self.features = VisualFeatureCache.build(self.policy, parts, self.output_dir / "cache",
                                                         num_workers=cfg.data.num_workers, progress=cfg.run.progress)
            tdist.barrier()
            if not self.dist.is_main:
                self.features = VisualFeatureCache.build(self.policy, parts, self.output_dir / "cache")
        self.policy.train()
        self.module = _LossModule(self.policy)
        if self.dist.enabled and cfg.run.distributed == "fsdp":
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
            self.ddp = FSDP(self.module, use_orig_params=True,
                            device_id=self.device if self.device.type == "cuda" else None)
        elif self.dist.enabled:
            self.ddp = DDP(self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                           find_unused_parameters=not self.policy.config.perceiver.use_state_tokens)
        else:
            self.ddp = self.module

        # optimisation
        self.per_device = cfg.optim.per_device_batch_size
        self.accum = cfg.optim.grad_accum_steps(self.dist.world_size)
        self.sampler = ResumableDistributedSampler(self.train_data, num_replicas=self.dist.world_size,
                                                   rank=self.dist.rank, shuffle=True, seed=cfg.run.seed)
        if self.sampler.num_samples < self.per_device * self.accum:
            raise ConfigError(f"{len(self.train_data)} training samples are too few for a global batch of "
                              f"{cfg.optim.global_batch_size}")
        self.total_steps = cfg.total_steps()
        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        self.ema = None
        if cfg.optim.ema_decay:
            if self.dist.enabled and cfg.run.distributed == "fsdp":
                raise ConfigError("optim.ema_decay is not supported with run.distributed fsdp (sharded weights)")
            self.ema = WeightEMA([(n, p) for n, p in self.policy.named_parameters() if p.requires_grad],
                                 cfg.optim.ema_decay)
        self.optimizer = torch.optim.AdamW(_param_groups(self.policy, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                           betas=cfg.optim.betas, eps=cfg.optim.eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupCosine(self.total_steps, cfg.optim.warmup_ratio, cfg.optim.min_lr_ratio))
        self.step = 0
        self.batches = ResumableBatches(
            self.sampler, self.per_device, self.dist.world_size,
            lambda sampler: DataLoader(_Keyed(self.train_data), batch_size=self.per_device, sampler=sampler,
                                       collate_fn=_keyed_collate, drop_last=True,
                                       pin_memory=self.device.type == "cuda",
                                       num_workers=0 if self.features is not None else cfg.data.num_workers))
        self._writer = None
        self.train_seconds = 0.0  # wall time spent in training steps, over all resumed runs
        if cfg.run.resume:
            self.maybe_resume(cfg.run.resume)

    def normalization_stats(self):
        """State statistics of the training frames, and action statistics of what the head predicts: the
        recorded actions, or with ``arm_actions`` "relative" the chunks' arm offsets from each frame's joints
        (unpadded chunk steps of every training sample)."""
        state_stats, action_stats = self.train_data.normalization()
        if self.policy.config.arm_actions != "relative":
            return state_stats, action_stats
        rows = []
        for e, i in self.train_data.index:
            actions, mask = self.train_data.chunk(int(e), int(i))
            state = torch.from_numpy(self.train_data._state[int(e)][int(i)])
            rows.append(self.policy.to_model_actions(torch.from_numpy(actions), state)[torch.from_numpy(mask)])
        return state_stats, NormalizationStats.from_data(torch.cat(rows).numpy())

    def _horizon(self) -> int:
        m = self.config.model
        if m.is_preset:
            cfg = JalaPolicyConfig.from_preset(m.init)
            return int(m.config.get("action_head", {}).get("action_horizon", cfg.action_head.action_horizon))
        from jala_policy.config import read_json_file
        return int(read_json_file(Path(m.init) / "config.json")["action_head"]["action_horizon"])

    # ---------------------------------------------------------------------------------------------- data
    def next_micro_batch(self) -> dict:
        return self.batches.next()

    def _visual(self, batch: dict):
        """The micro-batch's frozen visual features from the cache, else its images (encoded in the forward)."""
        if self.features is not None:
            return self.features.lookup(batch["dataset"], batch["row"])
        return batch["images"]

    def _noise(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.policy.config.action_head
        pairs = [sample_noise(self.config.run.seed, int(ep), int(i), h.action_horizon, h.action_dim,
                              h.noise_beta_alpha, h.noise_beta_beta, h.noise_s)
                 for ep, i in zip(batch["epoch"], batch["index"])]
        return torch.from_numpy(np.stack([p[0] for p in pairs])), torch.tensor([p[1] for p in pairs])

    # ---------------------------------------------------------------------------------------------- step
    def forward_backward(self, micro_batches: list[dict]) -> float:
        dim = self.policy.config.action_head.action_dim
        count = torch.tensor([float(sum(int(mb["action_mask"].sum()) for mb in micro_batches) * dim)],
                             dtype=torch.float64, device=self.device)
        tdist.all_reduce_sum(count)
        n = max(float(count[0]), 1.0)
        world = self.dist.world_size
        total = torch.zeros(1, dtype=torch.float64, device=self.device)
        for i, mb in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync = self.ddp.no_sync() if (self.dist.enabled and not last) else contextlib.nullcontext()
            visual = self._visual(mb)
            noise, t = self._noise(mb)
            with sync:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
                    err_sum = self.ddp(visual, mb["instruction"], mb["state"], mb["actions"],
                                       mb["action_mask"].to(self.device), noise.to(self.device), t.to(self.device))
                (err_sum * (world / n)).backward()
            total += err_sum.detach().to(torch.float64)
        tdist.all_reduce_sum(total)
        return float(total[0]) / n

    def train_step(self) -> dict:
        t0 = time.perf_counter()
        micro = [self.next_micro_batch() for _ in range(self.accum)]
        loss = self.forward_backward(micro)
        stats = self.optimizer_step()
        dt = time.perf_counter() - t0
        self.train_seconds += dt
        return {"step": self.step, "loss": loss, **stats,
                "samples_per_s": self.config.optim.global_batch_size / max(dt, 1e-9)}

    def optimizer_step(self) -> dict:
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.optim.grad_clip)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        self.step += 1
        return {"grad_norm": float(grad_norm), "lr": lr}

    # --------------------------------------------------------------------------------------- validation
    def _averaged(self):
        """The weights validation and export use: the moving average when there is one, else the raw ones."""
        return self.ema.applied() if self.ema is not None else contextlib.nullcontext()

    def validate(self, max_samples: int = 256) -> dict | None:
        """Open-loop action error on the validation episodes: the chunk the policy samples (fixed noise) for a
        recorded observation against the recorded actions, in robot units (arm rad, hand 0..1000), per joint
        and per horizon step, padded steps excluded."""
        if self.val_data is None or len(self.val_data) == 0:
            return None
        with self._averaged():
            return self._validate(max_samples)

    @torch.no_grad()
    def _validate(self, max_samples: int) -> dict:
        policy = self.policy
        was_training = policy.training
        policy.eval()
        idx = np.linspace(0, len(self.val_data) - 1, min(max_samples, len(self.val_data))).round().astype(int)
        abs_sum, counts, fm_sum, fm_n = None, None, 0.0, 0.0
        try:
            for s in range(0, len(idx), 64):
                items = [self.val_data[int(i)] for i in idx[s:s + 64]]
                batch = collate(items)
                batch["epoch"] = torch.full((len(items),), VALIDATION_NOISE_KEY, dtype=torch.long)
                visual = self._visual(batch)
                if isinstance(visual, torch.Tensor):
                    visual = policy.visual_features(visual)
                emb = policy.embeddings_from_features(*visual, batch["instruction"])
                state = policy.normalizer.state.normalize(batch["state"].to(self.device))
                noise, t = self._noise(batch)
                proprio = batch["state"].to(self.device)
                target = policy.normalizer.action.normalize(policy.to_model_actions(batch["actions"].to(self.device),
                                                                                    proprio))
                mask = batch["action_mask"].to(self.device)
                fm = policy.action_head.loss(emb, state, target, action_mask=mask, noise=noise.to(self.device),
                                             t=t.to(self.device), reduction="sum")
                fm_sum += float(fm)
                fm_n += float(mask.sum()) * target.shape[-1]
                pred = policy.from_model_actions(policy.normalizer.action.unnormalize(
                    policy.action_head.denoise(emb, state, noise.to(self.device))), proprio).cpu()
                err = (pred - batch["actions"]).abs() * batch["action_mask"][..., None]
                abs_sum = err.sum(0) if abs_sum is None else abs_sum + err.sum(0)
                c = batch["action_mask"].float().sum(0)
                counts = c if counts is None else counts + c
        finally:
            policy.train(was_training)
        per_step_joint = (abs_sum / counts.clamp(min=1)[:, None]).numpy()  # (horizon, dim)
        per_joint = (abs_sum.sum(0) / counts.sum().clamp(min=1)).numpy()
        from embodiment import ARM_DOF
        return {"step": self.step, "val_flow_loss": fm_sum / max(fm_n, 1.0),
                "val_arm_mae_rad": float(per_joint[:ARM_DOF].mean()),
                "val_hand_mae": float(per_joint[ARM_DOF:].mean()) if per_joint.size > ARM_DOF else 0.0,
                "val_mae_per_joint": per_joint.tolist(),
                "val_arm_mae_per_step": per_step_joint[:, :ARM_DOF].mean(1).tolist(),
                "val_samples": int(len(idx))}

    # ---------------------------------------------------------------------------------------------- loop
    def train(self, num_steps: int | None = None) -> list[dict]:
        cfg = self.config
        end = self.total_steps if num_steps is None else min(self.total_steps, self.step + num_steps)
        main = self.dist.is_main
        if main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            cfg.dump(self.output_dir / "config.yaml")
        bar = None
        if main and cfg.run.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.total_steps, initial=self.step, desc="post-train", dynamic_ncols=True)
        out = []
        try:
            while self.step < end:
                stats = self.train_step()
                out.append(stats)
                if main:
                    self._log(stats)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{stats['loss']:.4f}", lr=f"{stats['lr']:.2e}")
                if self.step % cfg.run.val_every == 0 or self.step == end:
                    val = self.validate()
                    if main and val is not None:
                        self._log_val(val)
                        if bar is not None:
                            bar.write(f"step {self.step}: val arm error {val['val_arm_mae_rad']:.4f} rad, "
                                      f"hand {val['val_hand_mae']:.1f}")
                if cfg.run.export_every and self.step % cfg.run.export_every == 0:
                    self.export(self.output_dir / "export" / f"step_{self.step:08d}")
                if self.step % cfg.run.save_every == 0 and self.step < end:
                    self.save()
            if out:
                self.save()
                self.export(self.output_dir / "policy")
        finally:
            if bar is not None:
                bar.close()
            if self._writer is not None:
                self._writer.flush()
        return out

    def _tb(self):
        if self._writer is None and self.config.run.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))
        return self._writer

    def _append_metrics(self, row: dict) -> None:
        with open(self.output_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def _log(self, stats: dict) -> None:
        if self.step % self.config.run.log_every:
            return
        self._append_metrics({"kind": "train", **stats, "train_seconds": self.train_seconds})
        w = self._tb()
        if w is not None:
            for key in ("loss", "grad_norm", "lr", "samples_per_s"):
                w.add_scalar(f"train/{key}", stats[key], self.step)

    def _log_val(self, val: dict) -> None:
        self._append_metrics({"kind": "val", **val, "train_seconds": self.train_seconds})
        w = self._tb()
        if w is not None:
            for key in ("val_flow_loss", "val_arm_mae_rad", "val_hand_mae"):
                w.add_scalar(f"val/{key[4:]}", val[key], self.step)
            for k, v in enumerate(val["val_arm_mae_per_step"]):
                w.add_scalar(f"val_arm_mae_rad_by_step/{k + 1:02d}", v, self.step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------------------------------------- export
    def export(self, directory: Path) -> Path | None:
        """Write the policy as a ``JalaPolicy`` checkpoint (main rank), replacing ``directory`` atomically."""
        if not self.dist.is_main:
            return None
        directory = Path(directory)
        tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        with self._averaged():
            state = self._model_state()
            export_policy = self.policy
            if self.dist.enabled and self.config.run.distributed == "fsdp":  # gathered weights into a plain copy
                export_policy.load_state_dict(state)
            export_policy.save_pretrained(tmp)
        info = {"step": self.step, "train_seconds": self.train_seconds, "datasets": self.config.data.roots,
                "dataset_ids": self.train_data.ids, "camera_keys": self.train_data.camera_keys,
                "train_episodes": len(self.train_data.episodes),
                "val_episodes": len(self.val_data.episodes) if self.val_data else 0,
                "config": self.config.to_dict()}
        (tmp / "posttrain.json").write_text(json.dumps(info, indent=1, default=str))
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
        return directory

    # -------------------------------------------------------------------------------------- checkpoints
    def _model_state(self) -> dict:
        if self.dist.enabled and self.config.run.distributed == "fsdp":
            from torch.distributed.fsdp import FullStateDictConfig, StateDictType
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
            with FSDP.state_dict_type(self.ddp, StateDictType.FULL_STATE_DICT,
                                      FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
                return {k.removeprefix("policy."): v for k, v in self.ddp.state_dict().items()}
        return self.policy.state_dict()

    def save(self) -> Path | None:
        rngs = tdist.all_gather_object(rng_state())
        model_state = self._model_state()
        path = None
        if self.dist.is_main:
            state = {"model": model_state, "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "step": self.step, **self.batches.position(),
                     "global_batch_size": self.config.optim.global_batch_size, "total_steps": self.total_steps,
                     "world_size": self.dist.world_size, "rng": rngs, "train_seconds": self.train_seconds,
                     "normalization": {"state": self.policy.normalizer.state.to_dict(),
                                       "action": self.policy.normalizer.action.to_dict()},
                     "config": self.config.to_dict()}
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
            path = save_checkpoint(self.ckpt_dir, self.step, state, keep=self.config.run.keep_checkpoints)
        tdist.barrier()
        return path

    def maybe_resume(self, resume: str) -> bool:
        path = latest_checkpoint(self.ckpt_dir) if resume == "auto" else Path(resume)
        if path is None:
            return False
        if not path.is_file():
            raise ConfigError(f"checkpoint {path} does not exist")
        state = load_checkpoint(path)
        check_global_batch(state, path, self.config.optim.global_batch_size)
        if state["total_steps"] != self.total_steps:
            raise ConfigError(f"checkpoint {path} was trained for {state['total_steps']} steps, this run is set to "
                              f"{self.total_steps}: the learning-rate schedule would differ (start a new output_dir)")
        self.policy.load_state_dict(state["model"])
        if self.ema is not None:
            if "ema" not in state:
                raise ConfigError(f"checkpoint {path} was trained without optim.ema_decay: there is no weight "
                                  "average to go on from (start a new output_dir)")
            self.ema.load_state_dict(state["ema"])
        norm = state["normalization"]
        self.policy.normalizer = PolicyNormalizer(NormalizationStats.from_dict(norm["state"]),
                                                  NormalizationStats.from_dict(norm["action"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.batches.restore(state)
        rngs = state.get("rng") or []
        if self.dist.rank < len(rngs):
            set_rng_state(rngs[self.dist.rank])
        log.info("resumed from %s at step %d", path, self.step)
        return True
