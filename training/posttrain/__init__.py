"""Post-training (paper B.1): fine-tune a JALA policy on robot demonstrations recorded as LeRobot v3.0
datasets, and export a ``JalaPolicy`` checkpoint the policy node and the simulated evaluation load unchanged.

    python -m training.posttrain --config sim-small --data datasets/water_plant --output runs/water_plant
    torchrun --nproc-per-node 8 -m training.posttrain --config paper --data datasets/water_plant ...
"""
from .config import PostTrainConfig

__all__ = ["PostTrainConfig"]
