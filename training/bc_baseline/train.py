"""Train the behaviour-cloning baseline (see ``training.bc_baseline.model``).

    python -m training.bc_baseline --data datasets/water_plant --output runs/bc --steps 3000 --batch-size 64

Every frame of every episode of the datasets is a sample (``training.posttrain.data.DemoChunkDataset``: the
state, the recorded 16-step chunk after it, and its padding mask). All frames are decoded once per episode and
kept in memory at 96x72; each step draws a random batch, shifts its images by up to +-4 px and takes an AdamW step
on the masked L1 loss. The run is deterministic for a seed (on one device and thread count)."""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from embodiment import ACTION_DT, ACTION_HORIZON, ARM_DOF
from training.posttrain.data import DemoChunkDataset, clear_episodes, load_datasets, train_val_split

from .model import BCConfig, BCNet, decode_actions, encode_targets, resize_frames, save_bc, shift_augment


@dataclass
class TrainingData:
    images: torch.Tensor  # uint8 (N, V, 72, 96, 3)
    state: torch.Tensor  # float32 (N, 13), robot units
    actions: torch.Tensor  # float32 (N, horizon, 13), robot units
    mask: torch.Tensor  # bool (N, horizon)
    dataset: DemoChunkDataset

    def __len__(self) -> int:
        return int(self.state.shape[0])


def load_training_data(roots: list[str], camera_keys: list[str] | None = None,
                       horizon: int = ACTION_HORIZON, action_dt: float = ACTION_DT, log=print,
                       min_clearance: float = 0.0) -> TrainingData:
    """Every sample of every episode of the datasets at ``roots``, with its frames decoded (once per episode)
    and resized to the network's input size. ``min_clearance``: leave out the episodes post-training's
    ``data.min_clearance`` leaves out (closer to the FR3 gate's joint limits; 0: keep all)."""
    datasets = load_datasets(roots)
    keep = clear_episodes(datasets, min_clearance, log) if min_clearance else None
    episodes, _ = train_val_split(datasets, 0.0, 0, keep)
    if not episodes:
        from jala_policy.config import ConfigError

        raise ConfigError("the datasets hold no episodes" + (
            f" that keep {min_clearance:g} rad from the FR3 gate's joint limits (--min-clearance)" if keep else ""))
    ds = DemoChunkDataset(datasets, episodes, horizon=horizon, action_dt=action_dt, camera_keys=camera_keys,
                          with_images=False)
    n = len(ds)
    t0 = time.perf_counter()
    images = None
    for e in ds.episode_slots():
        rows = ds.episode_sample_indices(e)
        frame_idx = ds.index[rows, 1]
        views = np.stack([resize_frames(ds.episode_frames(e, key)[frame_idx]) for key in ds.camera_keys], axis=1)
        if images is None:
            images = np.empty((n, *views.shape[1:]), np.uint8)
        images[rows] = views
    items = [ds[i] for i in range(n)]
    log(f"loaded {n} samples of {len(ds.episode_slots())} episodes ({ds.num_views} view(s), recorded at "
        f"{ds.image_hw[1]}x{ds.image_hw[0]}) in {time.perf_counter() - t0:.1f} s")
    return TrainingData(images=torch.from_numpy(images),
                        state=torch.stack([it["state"] for it in items]),
                        actions=torch.stack([it["actions"] for it in items]),
                        mask=torch.stack([it["action_mask"] for it in items]),
                        dataset=ds)


def make_config(data: TrainingData, **overrides) -> BCConfig:
    """Normalisation statistics of ``data``: state / action min-max, and per arm joint the std of the recorded
    arm targets' offsets from the current joints (over the valid chunk steps)."""
    ds = data.dataset
    state_stats, action_stats = ds.normalization()
    offsets = (data.actions[..., :ARM_DOF] - data.state[:, None, :ARM_DOF])[data.mask]
    scale = offsets.double().std(dim=0).clamp_min(1e-3) if offsets.shape[0] > 1 else torch.full((ARM_DOF,), 0.1)
    instructions = ds.instructions
    return BCConfig(state_stats=state_stats.to_dict(), action_stats=action_stats.to_dict(),
                    arm_offset_scale=scale.tolist(), camera_keys=list(ds.camera_keys), record_hw=tuple(ds.image_hw),
                    instruction=instructions[0] if instructions else "", instructions=instructions,
                    horizon=ds.horizon, action_dt=ds.action_dt, **overrides)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[..., None].to(pred.dtype)
    return ((pred - target).abs() * m).sum() / (m.sum() * pred.shape[-1]).clamp_min(1.0)


def fit(net: BCNet, cfg: BCConfig, data: TrainingData, *, steps: int, batch_size: int = 64, lr: float = 1e-3,
        weight_decay: float = 1e-4, seed: int = 0, augment: bool = True, log_every: int = 100,
        log=print) -> list[float]:
    """AdamW on the masked L1 loss with a cosine learning-rate decay; returns the loss of every step."""
    gen = torch.Generator().manual_seed(seed)
    state_n = cfg.state_norm().normalize(data.state.double()).float()
    targets = encode_targets(cfg, data.state.double(), data.actions.double()).float()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = min(100, max(1, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / max(steps, 1))))
    net.train()
    losses, t0 = [], time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(data), (batch_size,), generator=gen)
        pixels = BCNet.to_float(data.images[idx])
        if augment:
            pixels = shift_augment(pixels, generator=gen)
        loss = masked_l1(net(pixels, state_n[idx]), targets[idx], data.mask[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_every and ((step + 1) % log_every == 0 or step == 0):
            recent = np.mean(losses[-log_every:])
            log(f"step {step + 1:6d}/{steps}  loss {recent:.4f}  lr {sched.get_last_lr()[0]:.2e}  "
                f"{(step + 1) / (time.perf_counter() - t0):.1f} steps/s")
    net.eval()
    return losses


def train(roots: list[str], output: str, *, steps: int, batch_size: int = 64, seed: int = 0, lr: float = 1e-3,
          camera_keys: list[str] | None = None, log_every: int = 100, log=print,
          model: dict | None = None, min_clearance: float = 0.0) -> tuple[BCNet, BCConfig]:
    """Train on every episode of the datasets at ``roots`` (those that keep ``min_clearance`` rad from the FR3
    gate's joint limits) and save to ``output``. ``model``: ``BCConfig`` overrides (keypoints, channels, hidden)."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    data = load_training_data(roots, camera_keys=camera_keys, log=log, min_clearance=min_clearance)
    cfg = make_config(data, **(model or {}))
    net = BCNet(cfg)
    log(f"BCNet: {sum(p.numel() for p in net.parameters()) / 1e6:.3f} M parameters, {torch.get_num_threads()} "
        "thread(s)")
    losses = fit(net, cfg, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed, log_every=log_every, log=log)
    with torch.no_grad():  # a sanity figure in robot units: mean |arm error| (rad) on a fixed batch
        idx = torch.arange(0, len(data), max(1, len(data) // 256))
        pred = decode_actions(cfg, data.state[idx].double(), net(BCNet.to_float(data.images[idx]),
                              cfg.state_norm().normalize(data.state[idx].double()).float()).double())
        m = data.mask[idx]
        arm_err = float((pred[..., :ARM_DOF] - data.actions[idx, :, :ARM_DOF].double()).abs()[m].mean())
        hand_err = float((pred[..., ARM_DOF:] - data.actions[idx, :, ARM_DOF:].double()).abs()[m].mean())
    wall = time.perf_counter() - t0
    final = float(np.mean(losses[-min(100, len(losses)):])) if losses else float("nan")
    save_bc(output, net, cfg, extra={"data": [str(r) for r in roots], "steps": steps, "batch_size": batch_size,
                                     "seed": seed, "lr": lr, "min_clearance": min_clearance,
                                     "samples": len(data), "final_loss": final,
                                     "train_arm_mae_rad": arm_err, "train_hand_mae": hand_err,
                                     "wall_seconds": wall, "threads": torch.get_num_threads()})
    log(f"train-set mean |error|: arm {arm_err:.4f} rad, hand {hand_err:.1f} (0..1000)")
    log(f"saved {output}; final loss {final:.4f}; wall time {wall:.1f} s ({wall / 60:.1f} min)")
    return net, cfg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="LeRobot v3.0 dataset directories")
    ap.add_argument("--output", required=True, help="directory for bc_policy.pt + bc_config.json")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--camera-keys", nargs="+", default=None, help="camera features (default: all of the dataset's)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--min-clearance", type=float, default=0.0,
                    help="leave out demos closer than this (rad) to the FR3 gate's joint limits, as post-training")
    args = ap.parse_args(argv)
    if not (np.isfinite(args.min_clearance) and args.min_clearance >= 0):
        ap.error("--min-clearance must be a finite number of rad >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    from jala_policy.config import ConfigError

    try:
        train(args.data, args.output, steps=args.steps, batch_size=args.batch_size, seed=args.seed, lr=args.lr,
              camera_keys=args.camera_keys, log_every=args.log_every, log=lambda m: print(m, flush=True),
              min_clearance=args.min_clearance)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
