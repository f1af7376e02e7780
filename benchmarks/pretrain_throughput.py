"""Pretraining throughput: samples/s per device of full optimiser steps (forward + backward of MCP + Align,
AdamW, EMA of the perceivers) of ``training.pretrain``.

    python -m benchmarks.pretrain_throughput                  # tiny preset on CPU (+ internvl3-2b sizes on CUDA)
    python -m benchmarks.pretrain_throughput --preset internvl3-2b --device cuda --batch 16

Random weights and synthetic token data (timing does not depend on their values). The real-size run uses the
paper's per-device batch of 16 sequences of one 448 px frame, 16 state latents, an instruction and one 15-frame
chunk per hand (2 x 130 motion tokens), bf16 autocast. Paper reference (A.4): 7.5M samples in one epoch in 68 h
on 8 A100-80GB, i.e. about 3.8 samples/s per GPU.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from training.pretrain import PretrainConfig, PretrainTrainer

PAPER_SAMPLES, PAPER_HOURS, PAPER_GPUS = 7.5e6, 68.0, 8
PAPER_PER_GPU = PAPER_SAMPLES / (PAPER_HOURS * 3600 * PAPER_GPUS)


def config_for(preset: str, device: str, batch: int, chunks: int, checkpointing: bool, out_dir: str) -> PretrainConfig:
    if preset == "tiny":
        cfg = PretrainConfig.from_preset("tiny")
    else:
        cfg = PretrainConfig.from_preset("paper")
        cfg.data.source, cfg.data.root, cfg.data.num_workers = "synthetic", None, 0
        cfg.data.image_hw = (448, 448)
        cfg.run.load_backbone_weights = False  # random weights at the real sizes
    cfg.data.num_time_chunks = chunks
    cfg.data.video_only_fraction = 0.3
    cfg.data.num_samples = 100_000
    cfg.optim.per_device_batch_size = batch
    cfg.optim.global_batch_size = batch  # one micro-batch per step: per-device throughput
    cfg.run.device, cfg.run.output_dir, cfg.run.resume = device, out_dir, None
    cfg.run.progress = cfg.run.tensorboard = False
    cfg.run.max_steps = 10_000
    cfg.run.gradient_checkpointing = checkpointing
    return cfg


def measure(preset: str, device: str, batch: int, steps: int, warmup: int, chunks: int, checkpointing: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_for(preset, device, batch, chunks, checkpointing, tmp)
        torch.manual_seed(0)
        trainer = PretrainTrainer(cfg)
        dev = trainer.device
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times, data_times = [], []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            micro = [trainer.next_micro_batch() for _ in range(trainer.accum)]
            t1 = time.perf_counter()
            trainer.forward_backward(micro)
            trainer.optimizer_step()
            sync()
            t2 = time.perf_counter()
            if i >= warmup:
                times.append(t2 - t1)
                data_times.append(t1 - t0)
        seq_len = int(micro[0]["attention_mask"].sum(1).float().mean())
        step_s = sum(times) / len(times)
        out = {"preset": preset, "device": str(dev), "dtype": "bf16 autocast" if trainer.autocast else "fp32",
               "per_device_batch": batch, "mean_seq_len": seq_len, "time_chunks_per_sample": chunks,
               "params_M": round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 1),
               "trainable_M": round(sum(p.numel() for p in trainer.params) / 1e6, 1),
               "step_s": round(step_s, 4), "samples_per_s": round(batch / step_s, 2),
               "data_s_per_step": round(sum(data_times) / len(data_times), 4), "steps": steps,
               "gradient_checkpointing": checkpointing, "torch_threads": torch.get_num_threads()}
        if dev.type == "cuda":
            out["peak_mem_GiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 1)
            out["gpu"] = torch.cuda.get_device_name(dev)
        return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["tiny", "internvl3-2b"], action="append")
    ap.add_argument("--device", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, help="per-device batch (default: 16)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 10 CPU, 20 CUDA)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--chunks", type=int, default=1, help="15-frame time chunks per sample (x hands)")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    args = ap.parse_args(argv)
    runs = []
    if args.preset:
        for p in args.preset:
            runs.append((p, args.device or ("cuda" if p != "tiny" else "cpu")))
    else:
        runs.append(("tiny", "cpu"))
        if torch.cuda.is_available():
            runs.append(("internvl3-2b", "cuda"))
        else:
            print("# CUDA not available: skipping the internvl3-2b (real size, bf16) measurement")
    print(f"# host: {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}")
    for preset, device in runs:
        steps = args.steps or (10 if device == "cpu" else 20)
        res = measure(preset, device, args.batch or 16, steps, args.warmup, args.chunks, args.gradient_checkpointing)
        print(json.dumps(res))
        print(f"{preset} on {res['device']} ({res['dtype']}): {res['samples_per_s']:.2f} samples/s per device "
              f"(batch {res['per_device_batch']}, {res['step_s'] * 1e3:.0f} ms per step, mean sequence "
              f"{res['mean_seq_len']} tokens)")
    print(f"paper reference: {PAPER_SAMPLES / 1e6:.1f}M samples in {PAPER_HOURS:.0f} h on {PAPER_GPUS} A100-80GB = "
          f"{PAPER_PER_GPU:.2f} samples/s per GPU")


if __name__ == "__main__":
    main()
