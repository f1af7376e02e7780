"""Latency of ``JalaPolicy.predict``, split into backbone (vision + LSP + LLM forward) and action head (N Euler
steps of the DiT), as p50/p90/p99 over repeated calls.

    python -m benchmarks.policy_latency                      # tiny on CPU, plus internvl3-2b sizes on CUDA if present
    python -m benchmarks.policy_latency --preset internvl3-2b --device cuda --compile

Random weights (timing does not depend on their values). Target on one H100, bf16, one 448 px view, 16-step chunk:
p50 under 25 ms end to end (published GR00T N1.5 on H100: 47.9 ms).
"""
from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import torch

from jala_policy import JalaPolicy, JalaPolicyConfig


def measure(preset: str, device: str, iters: int, warmup: int, views: int, compile_head: bool) -> dict:
    cfg = JalaPolicyConfig.from_preset(preset, num_views=views)
    dev = torch.device(device)
    with dev:
        policy = JalaPolicy.build(cfg, load_weights=False, device=dev)
    if compile_head:
        policy.action_head.velocity = torch.compile(policy.action_head.velocity, mode="max-autotune-no-cudagraphs")
    policy.profile = True
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (540, 960, 3), dtype=np.uint8) for _ in range(views)]
    q = np.zeros(cfg.action_head.state_dim)
    q[:7] = [0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.8]
    rows = []
    for i in range(warmup + iters):
        policy.predict(images, "water the plant", q, seed=i)
        if i >= warmup:
            rows.append(dict(policy.last_timing))
    out = {"preset": preset, "device": device, "dtype": str(policy.dtype).replace("torch.", ""), "views": views,
           "horizon": cfg.action_head.action_horizon, "steps": cfg.action_head.num_inference_steps,
           "params_M": round(sum(p.numel() for p in policy.parameters()) / 1e6, 1), "iters": iters}
    for key in ("backbone_ms", "head_ms", "total_ms"):
        v = np.array([r[key] for r in rows])
        out[key] = {f"p{p}": round(float(np.percentile(v, p)), 2) for p in (50, 90, 99)}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["tiny", "internvl3-2b"], action="append")
    ap.add_argument("--device", default=None)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="torch.compile the DiT velocity function")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    runs = []
    for preset in args.preset or (["tiny", "internvl3-2b"] if cuda else ["tiny"]):
        device = args.device or ("cuda" if cuda and preset != "tiny" else "cpu")
        runs.append(measure(preset, device, args.iters, args.warmup, args.views, args.compile))
    if args.json:
        print(json.dumps(runs, indent=1))
        return
    host = torch.cuda.get_device_name(0) if cuda else f"{platform.processor() or platform.machine()} CPU, " \
                                                         f"{torch.get_num_threads()} threads"
    print(f"policy latency on {host} (torch {torch.__version__})")
    for r in runs:
        print(f"\n{r['preset']} on {r['device']} ({r['dtype']}, {r['params_M']} M params, {r['views']} view(s), "
              f"{r['horizon']}-step chunk, {r['steps']} Euler steps, {r['iters']} calls)")
        print(f"  {'part':<10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
        for key, name in (("backbone_ms", "backbone"), ("head_ms", "head"), ("total_ms", "total")):
            s = r[key]
            print(f"  {name:<10}{s['p50']:>10.2f}{s['p90']:>10.2f}{s['p99']:>10.2f}")
    if not cuda:
        print("\nno CUDA device here: internvl3-2b sizes are timed only on a GPU (the 25 ms H100 target).")


if __name__ == "__main__":
    main()
