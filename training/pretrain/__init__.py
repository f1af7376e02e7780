"""JALA pretraining on hand videos (paper A.3-A.4): hybrid-masked chunk prediction + latent-action alignment.

``python -m training.pretrain --preset tiny`` runs a quick CPU pretraining on synthetic token data;
``python -m training.pretrain --config cfg.yaml`` a configured run; under ``torchrun`` it trains with DDP.
"""
from .config import PretrainConfig
from .data import SequenceBuilder, SyntheticTokenDataset
from .masking import hybrid_masks
from .model import JalaPretrainModel
from .trainer import PretrainTrainer, WarmupCosine

__all__ = ["JalaPretrainModel", "PretrainConfig", "PretrainTrainer", "SequenceBuilder", "SyntheticTokenDataset",
           "WarmupCosine", "hybrid_masks"]
