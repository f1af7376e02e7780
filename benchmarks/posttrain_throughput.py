"""Post-training throughput: samples/s per device of full optimiser steps of ``training.posttrain``
(flow-matching loss through the language model and the DiT head, backward, AdamW), plus the one-off cost of
caching the frozen visual features and the rate video frames decode at.

    python -m benchmarks.posttrain_throughput                      # small preset on CPU (+ internvl3-2b on CUDA)
    python -m benchmarks.posttrain_throughput --preset internvl3-2b --device cuda --batch 16

A synthetic LeRobot v3.0 dataset (random frames at the recorded size, 15 fps) is written to a temporary folder
by the project's own writer; timing does not depend on the values. ``small`` runs the sim-small recipe (features
cached: what a CPU run does every step); ``internvl3-2b`` runs the paper recipe at the real sizes with random
weights, bf16 autocast, per-device batch 16, images encoded every step (no cache) and, separately, with the
cache. Paper reference (B.1): 128 x 30k samples in about 8 h on 8 A100 = 16.7 samples/s per GPU; the target is
twice that.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hardware.sim.tasks import INSTRUCTIONS
from training.posttrain.config import PostTrainConfig
from training.recording.lerobot_v3 import LeRobotV3Writer, robot_features

PAPER_PER_GPU = 128 * 30_000 / (8 * 3600 * 8)


def synthetic_dataset(root: Path, episodes: int, frames: int, hw: tuple[int, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    writer = LeRobotV3Writer.create(root, fps=15, features=robot_features({"camera": hw}), video_codec="h264")
    for _ in range(episodes):
        writer.start_episode(INSTRUCTIONS["water_plant"])  # the real instruction: its tokens are most of the sequence
        for _ in range(frames):
            writer.add_frame({"observation.state": rng.normal(size=13).astype(np.float32),
                              "action": rng.normal(size=13).astype(np.float32),
                              "observation.images.camera": rng.integers(0, 255, (*hw, 3), dtype=np.uint8)})
        writer.save_episode()
    writer.close()
    return root


def measure(preset: str, device: str, batch: int, steps: int, warmup: int, cache: bool, data: Path,
            out: Path) -> dict:
    from training.posttrain.trainer import PostTrainer

    cfg = PostTrainConfig.from_preset("sim-small" if preset == "small" else "paper")
    cfg.model.load_weights = False  # random weights at the preset's sizes
    cfg.model.config = {}
    cfg.data.roots, cfg.data.cache_features, cfg.data.num_workers = [str(data)], cache, 2
    cfg.data.val_fraction = 0.0
    cfg.optim.per_device_batch_size = cfg.optim.global_batch_size = batch  # one micro-batch: per-device figures
    cfg.run.device, cfg.run.output_dir, cfg.run.resume = device, str(out), None
    cfg.run.progress = cfg.run.tensorboard = False
    cfg.run.bf16 = True
    t0 = time.perf_counter()
    trainer = PostTrainer(cfg)
    setup_s = time.perf_counter() - t0
    dev = trainer.device
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(warmup + steps):
        sync()
        t = time.perf_counter()
        trainer.train_step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    frames = sum(ds.num_frames for ds in trainer.lerobot)
    step_s = float(np.median(times))
    return {"preset": preset, "device": str(dev), "feature_cache": cache, "per_device_batch": batch,
            "step_s_median": step_s, "samples_per_s": batch / step_s,
            "setup_s": setup_s, "setup_frames": frames,
            "trainable_params_M": sum(p.numel() for p in trainer.params) / 1e6,
            "peak_mem_GiB": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None,
            "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}


def decode_rate(data: Path) -> float:
    from training.recording.lerobot_v3 import LeRobotV3Dataset
    ds = LeRobotV3Dataset(data)
    t = time.perf_counter()
    n = sum(ds.decode_frames(e, "observation.images.camera").shape[0] for e in range(ds.num_episodes))
    return n / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["small", "internvl3-2b"], default=None,
                    help="default: small on CPU, and internvl3-2b too when CUDA is available")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None)
    ap.add_argument("--batch", type=int, default=None, help="per-device batch (small: 32, internvl3-2b: 16)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    runs = []
    if args.preset:
        runs.append((args.preset, args.device or ("cuda" if args.preset == "internvl3-2b" else "cpu")))
    else:
        runs.append(("small", "cpu"))
        if torch.cuda.is_available():
            runs.append(("internvl3-2b", "cuda"))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset, device in runs:
            hw = (240, 320) if preset == "small" else (480, 640)
            data = synthetic_dataset(Path(tmp) / f"data-{preset}", episodes=2, frames=120, hw=hw)
            rate = decode_rate(data)
            batch = args.batch or (32 if preset == "small" else 16)
            caches = [True] if preset == "small" else [False, True]
            for cache in caches:
                r = measure(preset, device, batch, args.steps, args.warmup, cache, data,
                            Path(tmp) / f"run-{preset}-{cache}")
                r["video_decode_frames_per_s"] = rate
                results.append(r)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        mem = f", peak {r['peak_mem_GiB']:.1f} GiB" if r["peak_mem_GiB"] is not None else ""
        line = (f"{r['preset']:>13} on {r['device']:<6} cache={'yes' if r['feature_cache'] else 'no ':<3} "
                f"batch {r['per_device_batch']:>3}: {r['samples_per_s']:7.1f} samples/s per device "
                f"(step {r['step_s_median'] * 1e3:.0f} ms{mem}); set-up {r['setup_s']:.1f} s for "
                f"{r['setup_frames']} frames; video decode {r['video_decode_frames_per_s']:.0f} frames/s; "
                f"{r['trainable_params_M']:.1f} M trainable")
        if r["device"].startswith("cuda"):
            line += f"  [paper pace {PAPER_PER_GPU:.1f}/s per GPU, target {2 * PAPER_PER_GPU:.1f}]"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
