"""Atomic training checkpoints.

``<output_dir>/checkpoints/step_<N>.pt`` holds model, optimiser, scheduler, per-rank RNG states, step and data
position; ``<output_dir>/checkpoints/latest`` names the newest one. Both are written to a temporary file in the
same directory, flushed, fsync'ed and moved into place with ``os.replace``, so an interrupted write (crash,
Ctrl-C, full disk) leaves the previous checkpoint and pointer intact.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from training.files import atomic_write

LATEST = "latest"


def save_checkpoint(directory: Path, step: int, state: dict, keep: int = 2) -> Path:
    directory = Path(directory)
    path = directory / f"step_{step:08d}.pt"
    atomic_write(path, lambda f: torch.save(state, f))
    atomic_write(directory / LATEST, lambda f: f.write(path.name.encode()))
    ckpts = sorted(directory.glob("step_*.pt"))
    for old in ckpts[:-keep]:
        if old != path:
            old.unlink(missing_ok=True)
    return path


def latest_checkpoint(directory: Path) -> Path | None:
    directory = Path(directory)
    pointer = directory / LATEST
    if pointer.is_file():
        candidate = directory / pointer.read_text().strip()
        if candidate.is_file():
            return candidate
    ckpts = sorted(directory.glob("step_*.pt"))
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
