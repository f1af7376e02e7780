"""Hand a pretrained model on to post-training: a JalaPolicy directory with the pretrained backbone, texture
encoder and Latent State Perceiver, and a freshly initialised flow-matching action head."""
from __future__ import annotations

import copy
from pathlib import Path

from jala_policy.action_head import FlowMatchingActionHead
from jala_policy.policy import JalaPolicy

from .model import JalaPretrainModel


def export_policy(model: JalaPretrainModel, directory: str | Path) -> Path:
    cfg = copy.deepcopy(model.config.model)
    head = FlowMatchingActionHead(cfg.action_head, context_dim=model.backbone.hidden_size).to(model.device)
    policy = JalaPolicy(cfg, model.backbone, model.texture_encoder, model.lsp, head)
    policy.save_pretrained(directory)
    return Path(directory)
