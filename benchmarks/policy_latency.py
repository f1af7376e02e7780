"""Latency of ``JalaPolicy.predict`` per inference path, split into preprocessing, vision (InternViT + texture
encoder + Latent State Perceiver), LLM (language model forward) and action head (N Euler steps of the DiT), as
p50/p90/p99 over repeated calls after a warm-up, with the speed-up of each path over the eager reference.

Paths (``jala_policy.InferenceConfig``), timed in one run on the same frames and seeds:
    eager     the reference path
    fast      torch preprocessing from one upload, cached instruction, CUDA graph of the head on CUDA
    fast-ort  the fast path with the head exported to ONNX and run by ONNX Runtime

    python -m benchmarks.policy_latency                                   # tiny on CPU (internvl3-2b too on CUDA)
    python -m benchmarks.policy_latency --preset internvl3-2b --device cuda --views 2 --json

Random weights (timing does not depend on their values). Target on one H100, bf16, one 448 px view, 16-step chunk:
p50 under 25 ms end to end (published GR00T N1.5 on H100: 47.9 ms). On CUDA the peak GPU memory of each path is
reported too.
"""
from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import torch

from jala_policy import InferenceConfig, JalaPolicy, JalaPolicyConfig
from jala_policy.fast_inference import STAGES

PATHS = {
    "eager": InferenceConfig(),
    "fast": InferenceConfig(fast=True),
    "fast-ort": InferenceConfig(fast=True, head_backend="onnxruntime"),
}
PARTS = (*STAGES, "total")


def percentiles(values: list[float]) -> dict:
    v = np.asarray(values)
    return {f"p{p}": round(float(np.percentile(v, p)), 3) for p in (50, 90, 99)}


def time_path(policy: JalaPolicy, inference: InferenceConfig, images, q, iters: int, warmup: int) -> dict:
    cuda = policy.device.type == "cuda"
    policy.configure_inference(inference)  # ONNX export / CUDA graph capture happen here, not in the timing
    if cuda:
        torch.cuda.synchronize(policy.device)
        torch.cuda.reset_peak_memory_stats(policy.device)
    rows, first_chunk = [], None
    for i in range(warmup + iters):
        chunk = policy.predict(images, "water the plant", q, seed=i)
        if i == warmup:
            first_chunk = chunk.positions
        if i >= warmup:
            rows.append({**policy.last_stage_timing, "total": policy.last_timing["total_ms"]})
    out = {part: percentiles([r[part] for r in rows]) for part in PARTS}
    if cuda:
        out["gpu_peak_memory_MiB"] = round(torch.cuda.max_memory_allocated(policy.device) / 2**20, 1)
    out["first_chunk"] = first_chunk
    return out


def measure(preset: str, device: str, iters: int, warmup: int, views: int, paths: list[str]) -> dict:
    cfg = JalaPolicyConfig.from_preset(preset, num_views=views)
    dev = torch.device(device)
    with dev:
        policy = JalaPolicy.build(cfg, load_weights=False, device=dev)
    policy.profile = True  # synchronise at each stage so GPU work is charged to the stage that queued it
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (540, 960, 3), dtype=np.uint8) for _ in range(views)]
    q = np.zeros(cfg.action_head.state_dim)
    q[:7] = [0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.8]
    out = {"preset": preset, "device": device, "dtype": str(policy.dtype).replace("torch.", ""), "views": views,
           "horizon": cfg.action_head.action_horizon, "steps": cfg.action_head.num_inference_steps,
           "params_M": round(sum(p.numel() for p in policy.parameters()) / 1e6, 1), "iters": iters,
           "torch_threads": torch.get_num_threads(), "paths": {}}
    for name in paths:
        out["paths"][name] = time_path(policy, PATHS[name], images, q, iters, warmup)
    chunks = {name: r.pop("first_chunk") for name, r in out["paths"].items()}
    reference = out["paths"].get("eager")
    for name, r in out["paths"].items():
        if reference is not None and name != "eager":
            # same seed, same frames: how far this path's chunk is from the eager one (robot units)
            r["max_abs_diff_vs_eager"] = float(np.abs(chunks[name] - chunks["eager"]).max())
            r["speedup_vs_eager"] = {part: round(reference[part]["p50"] / max(r[part]["p50"], 1e-9), 2)
                                     for part in ("head", "total")}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["tiny", "internvl3-2b"], action="append")
    ap.add_argument("--device", default=None)
    ap.add_argument("--iters", type=int, default=200, help="timed calls per path (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--views", type=int, default=1, help="camera views per observation (wipe_board: 2)")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {', '.join(PATHS)}")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        ap.error(f"unknown path(s) {', '.join(unknown)}; known: {', '.join(PATHS)}")
    if "eager" in paths:
        paths.remove("eager")
        paths.insert(0, "eager")  # the reference first: the others are compared with it
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    runs = []
    for preset in args.preset or (["tiny", "internvl3-2b"] if cuda else ["tiny"]):
        device = args.device or ("cuda" if cuda and preset != "tiny" else "cpu")
        runs.append(measure(preset, device, args.iters, args.warmup, args.views, paths))
    if args.json:
        print(json.dumps(runs, indent=1))
        return
    host = torch.cuda.get_device_name(0) if cuda else f"{platform.processor() or platform.machine()} CPU, " \
                                                         f"{torch.get_num_threads()} threads"
    print(f"policy latency on {host} (torch {torch.__version__})")
    for r in runs:
        print(f"\n{r['preset']} on {r['device']} ({r['dtype']}, {r['params_M']} M params, {r['views']} view(s), "
              f"{r['horizon']}-step chunk, {r['steps']} Euler steps, {r['iters']} calls per path)")
        print(f"  {'path':<10}{'part':<12}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
        for name, p in r["paths"].items():
            for part in PARTS:
                s = p[part]
                print(f"  {name if part == PARTS[0] else '':<10}{part:<12}{s['p50']:>10.2f}{s['p90']:>10.2f}"
                      f"{s['p99']:>10.2f}")
            extra = []
            if "speedup_vs_eager" in p:
                extra.append(f"p50 speed-up vs eager: head x{p['speedup_vs_eager']['head']}, "
                             f"total x{p['speedup_vs_eager']['total']}; max |chunk - eager| "
                             f"{p['max_abs_diff_vs_eager']:.2e}")
            if "gpu_peak_memory_MiB" in p:
                extra.append(f"GPU peak {p['gpu_peak_memory_MiB']} MiB")
            for line in extra:
                print(f"  {'':<10}{line}")
    if not cuda:
        print("\nno CUDA device here: internvl3-2b sizes and the CUDA graph are timed only on a GPU "
              "(the 25 ms H100 target).")


if __name__ == "__main__":
    main()
