"""Post-train a JALA policy on demonstrations (paper B.1).

    python -m training.posttrain --config sim-small --data datasets/water_plant --output runs/water_plant
    python -m training.posttrain --config sim-small --data datasets/water_plant --output runs/water_plant --resume auto
    torchrun --nproc-per-node 8 -m training.posttrain --config paper --data datasets/water_plant --output runs/wp

``--config``: a YAML file or a bundled name (paper, sim-small, tiny). The exported policy is
``<output>/policy``: ``python -m evaluation --policy <output>/policy`` and the ROS policy node load it as is.
"""
from __future__ import annotations

import argparse
import logging
import sys

from jala_policy.config import ConfigError

from .. import distributed as tdist
from .config import PostTrainConfig


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="sim-small", help="YAML file, or paper | sim-small | tiny")
    ap.add_argument("--data", nargs="+", default=None, help="LeRobot v3.0 dataset folder(s) (data.roots)")
    ap.add_argument("--output", default=None, help="run folder (run.output_dir)")
    ap.add_argument("--init", default=None, help="model preset (small, tiny, internvl3-2b) or exported policy dir")
    ap.add_argument("--steps", type=int, default=None, help="total optimiser steps (run.max_steps)")
    ap.add_argument("--batch-size", type=int, default=None, help="global batch (per-device batch is kept)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--ema-decay", type=float, default=None,
                    help="exponential moving average of the weights for validation and exports (optim.ema_decay)")
    ap.add_argument("--min-clearance", type=float, default=None,
                    help="leave out demos closer than this (rad) to the FR3 gate's joint limits (data.min_clearance)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    ap.add_argument("--resume", default=None, help="auto (default) | none | a checkpoint path")
    ap.add_argument("--export-every", type=int, default=None, help="also export the policy every N steps")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def configure(args: argparse.Namespace) -> PostTrainConfig:
    cfg = PostTrainConfig.load(args.config)
    d = cfg.to_dict()
    if args.data:
        d["data"]["roots"] = args.data
    if args.output:
        d["run"]["output_dir"] = args.output
    if args.init:
        d["model"]["init"] = args.init
    if args.steps is not None:
        d["run"]["max_steps"] = args.steps
    if args.batch_size is not None:
        d["optim"]["global_batch_size"] = args.batch_size
        d["optim"]["per_device_batch_size"] = min(d["optim"]["per_device_batch_size"], args.batch_size)
    if args.lr is not None:
        d["optim"]["lr"] = args.lr
    if args.ema_decay is not None:
        d["optim"]["ema_decay"] = args.ema_decay
    if args.min_clearance is not None:
        d["data"]["min_clearance"] = args.min_clearance
    if args.seed is not None:
        d["run"]["seed"] = args.seed
    if args.device:
        d["run"]["device"] = args.device
    if args.resume is not None:
        d["run"]["resume"] = None if args.resume == "none" else args.resume
    if args.export_every is not None:
        d["run"]["export_every"] = args.export_every
    if args.no_progress:
        d["run"]["progress"] = False
    return PostTrainConfig.from_dict(d)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        cfg = configure(args)
        import torch
        cuda = cfg.run.device == "cuda" or (cfg.run.device == "auto" and torch.cuda.is_available())
        tdist.init_distributed("cuda" if cuda else "cpu")
        from .trainer import PostTrainer
        trainer = PostTrainer(cfg)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"post-training: {exc}", file=sys.stderr)
        return 2
    try:
        trainer.train()
    except KeyboardInterrupt:
        print(f"post-training: interrupted at step {trainer.step}; the last checkpoint in "
              f"{trainer.ckpt_dir} resumes it (--resume auto)", file=sys.stderr)
        return 130
    finally:
        trainer.close()
        tdist.cleanup()
    if trainer.dist.is_main:
        print(f"post-training: {trainer.step} steps in {trainer.train_seconds:.0f} s; policy exported to "
              f"{trainer.output_dir / 'policy'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
