"""Train the motion tokenizer on the motion of a dataset in the training/data format.

    python -m training.tokenizer.train --data DIR --out DIR [--config default|tiny] [--steps 2000]
        [--batch-size 256] [--lr 2e-4] [--stride 5] [--device cpu|cuda] [--seed 0]

Uses every fully annotated single-hand 15-frame window of the train split (sliding with --stride), sets the
tokenizer's normalisation statistics from them, trains with AdamW (L2 reconstruction in normalised space +
0.02 x commitment, codebooks by EMA with k-means init and dead-code re-seeding), then writes the tokenizer
(config.json + model.safetensors) and metrics.json (reconstruction metrics of the test split, or of the
training windows when the dataset has no test split) to --out.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import iter_motion_chunks
from ..data.format import DataFormatError
from .config import MotionTokenizerConfig
from .evaluate import reconstruction_metrics
from .model import MotionTokenizer


def train_tokenizer(chunks, config: MotionTokenizerConfig | None = None, *, steps: int = 2000,
                    batch_size: int = 256, lr: float = 2e-4, weight_decay: float = 0.0, seed: int = 0,
                    warmup_ae_steps: int | None = None, device: str | torch.device = "cpu", log_every: int = 0,
                    log=print) -> tuple[MotionTokenizer, list]:
    """Train a MotionTokenizer on (N, 15, 99) chunks; returns (tokenizer in eval mode, loss history).

    The first ``warmup_ae_steps`` steps (default 10% of ``steps``) train encoder and decoder without the
    quantisers; the first quantised step then k-means-initialises the codebooks on the warmed-up encoder's
    outputs, which makes short runs converge much faster."""
    x = torch.as_tensor(np.asarray(chunks), dtype=torch.float32)
    if x.ndim != 3 or x.shape[1:] != (15, 99) or len(x) == 0:
        raise ValueError(f"chunks must be (N, 15, 99) with N > 0, got {tuple(x.shape)}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tok = MotionTokenizer(config or MotionTokenizerConfig())
    tok.set_normalization(x)
    tok.to(device)
    tok.train()
    opt = torch.optim.AdamW(tok.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)) * 0.9 + 0.1))
    history = []
    t0 = time.time()
    warm = steps // 10 if warmup_ae_steps is None else int(warmup_ae_steps)
    for step in range(steps):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=gen)
        out = tok(x[idx].to(device), quantize=step >= warm)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
        opt.step()
        sched.step()
        rec = {k: float(out[k].detach()) for k in ("loss", "wrist_mse", "finger_mse", "commit")}
        history.append(rec)
        if log_every and (step % log_every == 0 or step == steps - 1):
            log(f"step {step:6d}  loss {rec['loss']:.4f}  wrist {rec['wrist_mse']:.4f}  finger {rec['finger_mse']:.4f}"
                f"  commit {rec['commit']:.4f}  ({time.time() - t0:.1f}s)")
    tok.eval()
    return tok, history


@torch.no_grad()
def evaluate_tokenizer(tok: MotionTokenizer, chunks, batch_size: int = 1024) -> dict[str, float]:
    x = torch.as_tensor(np.asarray(chunks), dtype=torch.float32)
    recon = torch.cat([tok.reconstruct(x[i: i + batch_size].to(tok.mean.device)).cpu()
                       for i in range(0, len(x), batch_size)])
    return reconstruction_metrics(x, recon)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train the motion tokenizer (GRVQ VQ-VAE) on a dataset.")
    ap.add_argument("--data", required=True, help="dataset directory (training/data format)")
    ap.add_argument("--out", required=True, help="output directory for the tokenizer")
    ap.add_argument("--config", choices=("default", "tiny"), default="default")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--stride", type=int, default=5, help="frames between training windows")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=100)
    args = ap.parse_args(argv)
    try:
        train = iter_motion_chunks(args.data, stride=args.stride, splits=("train",))
        try:
            test = iter_motion_chunks(args.data, stride=15, splits=("test",))
            test_name = "test"
        except DataFormatError:
            test, test_name = train, "train"
    except DataFormatError as exc:
        print(f"error: {exc}")
        return 2
    cfg = MotionTokenizerConfig.tiny() if args.config == "tiny" else MotionTokenizerConfig()
    print(f"{len(train)} training windows; evaluating on {len(test)} {test_name} windows")
    tok, _ = train_tokenizer(train, cfg, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             device=args.device, log_every=args.log_every)
    metrics = evaluate_tokenizer(tok, test)
    out = Path(args.out)
    tok.cpu().save(out)
    (out / "metrics.json").write_text(json.dumps({"split": test_name, **metrics}, indent=2))
    for k, v in metrics.items():
        print(f"{test_name} {k}: {v:.4f}")
    print(f"saved tokenizer to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
