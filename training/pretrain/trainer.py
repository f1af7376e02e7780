"""The pretraining loop (paper A.3-A.4).

One optimiser step = ``grad_accum_steps`` micro-batches of ``per_device_batch_size`` on each of ``world_size``
ranks (global batch 128 in the paper). The loss of the step is the global-batch mean::

    L = sum(CE at masked motion positions) / #masked positions  +  lambda * sum(align) / #aligned chunks

with both counts summed over every micro-batch of every rank *before* the backward passes, so accumulation and
DDP give the same gradient as one process holding the whole global batch. After each optimiser step the
perceivers get the decoupled EMA of eq. 6-7.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset

from jala_policy.config import ConfigError
from jala_policy.perceiver import ema_update_perceivers

from .. import distributed as tdist
from ..batches import ResumableBatches, check_global_batch
from .checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import PretrainConfig
from .data import Collator, MaskedSequenceDataset, ResumableDistributedSampler, SequenceBuilder, SyntheticTokenDataset
from .model import JalaPretrainModel


class WarmupCosine:
    """LR multiplier: linear warm-up over the first ``warmup`` steps, then cosine decay to ``min_ratio``."""

    def __init__(self, total_steps: int, warmup_ratio: float, min_ratio: float = 0.0):
        self.total = max(1, int(total_steps))
        self.warmup = max(1, int(round(warmup_ratio * self.total))) if warmup_ratio > 0 else 0
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("run.device is cuda but CUDA is not available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def build_token_dataset(config: PretrainConfig):
    """(dataset, adapter) for the configured data source."""
    d = config.data
    if d.source == "synthetic":
        return SyntheticTokenDataset(d.num_samples, num_time_chunks=d.num_time_chunks, image_hw=d.image_hw,
                                     video_only_fraction=d.video_only_fraction,
                                     tokens_per_part=config.model.motion.tokens_per_part,
                                     codes_per_part=config.model.motion.codes_per_part, seed=config.run.seed), None
    from .adapter import jala_dataset_and_adapter
    return jala_dataset_and_adapter(config)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class PretrainTrainer:
    def __init__(self, config: PretrainConfig, *, dataset: Dataset | None = None, adapter=None,
                 model: JalaPretrainModel | None = None):
        self.config = config
        cfg = config
        self.dist = tdist.current()
        self.device = resolve_device(cfg.run.device, self.dist.local_rank)
        self.autocast = self.device.type == "cuda" and cfg.run.bf16
        self.output_dir = Path(cfg.run.output_dir)
        self.ckpt_dir = self.output_dir / "checkpoints"

        torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank
        self.model = (model or JalaPretrainModel(cfg)).to(self.device)
        if cfg.run.gradient_checkpointing:
            self.model.backbone.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.train()
        if self.dist.enabled:
            self.ddp = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                           find_unused_parameters=not cfg.model.perceiver.use_state_tokens)
        else:
            self.ddp = self.model

        if dataset is None:
            dataset, adapter = build_token_dataset(cfg)
        bb = self.model.backbone
        self.builder = SequenceBuilder.for_model(bb, cfg.model, cfg.masking, align_chunks=cfg.loss.align_chunks,
                                                 seed=cfg.run.seed)
        self.dataset = MaskedSequenceDataset(dataset, self.builder, adapter)
        pad = bb.tokenizer.pad_token_id if bb.tokenizer.pad_token_id is not None else 0
        self.collator = Collator(pad)
        self.per_device = cfg.optim.per_device_batch_size
        self.accum = cfg.optim.grad_accum_steps(self.dist.world_size)
        self.sampler = ResumableDistributedSampler(self.dataset, num_replicas=self.dist.world_size,
                                                   rank=self.dist.rank, shuffle=cfg.data.shuffle, seed=cfg.run.seed)
        if self.sampler.num_samples < self.per_device:
            raise ConfigError(f"{len(self.dataset)} samples are too few for {self.dist.world_size} rank(s) x "
                              f"per-device batch {self.per_device}")
        self.total_steps = cfg.total_steps(len(self.dataset))

        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                           betas=cfg.optim.betas, eps=cfg.optim.eps)
        self.schedule = WarmupCosine(self.total_steps, cfg.optim.warmup_ratio, cfg.optim.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)

        self.step = 0
        base = self.dataset.base
        self.batches = ResumableBatches(
            self.sampler, self.per_device, self.dist.world_size,
            lambda sampler: DataLoader(self.dataset, batch_size=self.per_device, sampler=sampler,
                                       collate_fn=self.collator, num_workers=self.config.data.num_workers,
                                       drop_last=True, pin_memory=self.device.type == "cuda"),
            # e.g. random windows of training.data.HandVideoDataset
            on_epoch=base.set_epoch if hasattr(base, "set_epoch") else None)
        self.history: list[dict] = []
        self._writer = None
        if cfg.run.resume:
            self.maybe_resume(cfg.run.resume)

    # --------------------------------------------------------------------------------------------- data
    def next_micro_batch(self) -> dict:
        return self.batches.next()

    # --------------------------------------------------------------------------------------------- step
    def forward_backward(self, micro_batches: list[dict]) -> dict[str, float]:
        """Accumulate the gradient of the global-batch loss over this rank's micro-batches."""
        cfg = self.config
        world = self.dist.world_size
        counts = torch.tensor([float(sum(int((mb["labels"] >= 0).sum()) for mb in micro_batches)),
                               float(sum(int(mb["align_positions"].shape[0]) for mb in micro_batches))],
                              dtype=torch.float64, device=self.device)
        tdist.all_reduce_sum(counts)
        n_mcp, n_align = float(counts[0]), float(counts[1])
        w_mcp = 1.0 / n_mcp if n_mcp > 0 else 0.0
        w_align = cfg.loss.align_weight / n_align if n_align > 0 else 0.0
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for i, mb in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync_ctx = self.ddp.no_sync() if (self.dist.enabled and not last) else contextlib.nullcontext()
            with sync_ctx:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
                    out = self.ddp(mb)
                loss = (out["mcp_sum"] * w_mcp + out["align_sum"] * w_align) * world
                loss.backward()
            sums += torch.stack([out["mcp_sum"].detach(), out["align_sum"].detach(),
                                 out["mcp_correct"].detach()]).to(torch.float64)
        tdist.all_reduce_sum(sums)
        mcp = float(sums[0]) / n_mcp if n_mcp > 0 else 0.0
        align = float(sums[1]) / n_align if n_align > 0 else 0.0
        return {"loss": mcp + cfg.loss.align_weight * align, "mcp": mcp, "align": align,
                "mcp_acc": float(sums[2]) / n_mcp if n_mcp > 0 else 0.0, "mcp_tokens": n_mcp,
                "align_chunks": n_align}

    def optimizer_step(self) -> dict[str, float]:
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.optim.grad_clip)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        ema_update_perceivers(self.model.lap, self.model.lsp, self.config.loss.ema_alpha)
        self.step += 1
        return {"grad_norm": float(grad_norm), "lr": lr}

    def train_step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        micro = [self.next_micro_batch() for _ in range(self.accum)]
        stats = self.forward_backward(micro)
        stats.update(self.optimizer_step())
        stats["step"] = self.step
        stats["samples_per_s"] = self.config.optim.global_batch_size / max(1e-9, time.perf_counter() - t0)
        return stats

    # ---------------------------------------------------------------------------------------------- loop
    def train(self, num_steps: int | None = None) -> list[dict]:
        """Run until ``total_steps`` (or ``num_steps`` more steps). Saves every ``save_every`` steps and at the
        end. Returns the per-step statistics of this call."""
        cfg = self.config
        end = self.total_steps if num_steps is None else min(self.total_steps, self.step + num_steps)
        main = self.dist.is_main
        bar = None
        if main and cfg.run.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.total_steps, initial=self.step, desc="pretrain", dynamic_ncols=True)
        out = []
        try:
            while self.step < end:
                stats = self.train_step()
                out.append(stats)
                self.history.append(stats)
                if main:
                    self._log(stats)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{stats['loss']:.4f}", mcp=f"{stats['mcp']:.3f}",
                                        align=f"{stats['align']:.3f}", lr=f"{stats['lr']:.2e}")
                if self.step % cfg.run.save_every == 0 and self.step < end:
                    self.save()
            if out:
                self.save()
        finally:
            if bar is not None:
                bar.close()
            if self._writer is not None:
                self._writer.flush()
        return out

    def _log(self, stats: dict) -> None:
        cfg = self.config
        if not cfg.run.tensorboard or self.step % cfg.run.log_every:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))
        for key in ("loss", "mcp", "align", "mcp_acc", "grad_norm", "lr", "samples_per_s"):
            self._writer.add_scalar(f"train/{key}", stats[key], self.step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------------------------------- checkpoints
    def state_dict(self, rng_states: list) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            **self.batches.position(),
            "global_batch_size": self.config.optim.global_batch_size,
            "total_steps": self.total_steps,
            "world_size": self.dist.world_size,
            "rng": rng_states,
            "config": self.config.to_dict(),
        }

    def save(self) -> Path | None:
        rngs = tdist.all_gather_object(rng_state())
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.ckpt_dir, self.step, self.state_dict(rngs), keep=self.config.run.keep_checkpoints)
        tdist.barrier()
        return path

    def maybe_resume(self, resume: str) -> bool:
        path = latest_checkpoint(self.ckpt_dir) if resume == "auto" else Path(resume)
        if path is None:
            return False
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        state = load_checkpoint(path)
        check_global_batch(state, path, self.config.optim.global_batch_size)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.batches.restore(state)
        rngs = state.get("rng") or []
        if self.dist.rank < len(rngs):
            set_rng_state(rngs[self.dist.rank])
        return True
