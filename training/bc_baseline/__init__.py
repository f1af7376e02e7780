"""A plain behaviour-cloning baseline: a small CNN (spatial-softmax keypoints + proprio MLP) trained with an L1
loss on the demonstration datasets ``training.posttrain`` reads, predicting the same 16-step action chunks.

    python -m training.bc_baseline --data datasets/water_plant --output runs/bc --steps 3000

``evaluation.policies.BCPolicy`` runs a trained baseline in the simulated world."""
from .model import BCConfig, BCNet, load_bc, resize_frames, save_bc, shift_augment

__all__ = ["BCConfig", "BCNet", "load_bc", "resize_frames", "save_bc", "shift_augment"]
