"""Hand a pretrained model on to post-training: a JalaPolicy directory with the pretrained backbone, texture
encoder and Latent State Perceiver, and a freshly initialised flow-matching action head.

Pretraining trains the vision tower (``freeze_vision`` False); post-training freezes the visual modules (paper
B.1), so the exported config has ``backbone.freeze_vision`` True and ``JalaPolicy.from_pretrained`` loads the
policy with the vision tower and projector frozen."""
from __future__ import annotations

import copy
from pathlib import Path

from jala_policy.action_head import FlowMatchingActionHead
from jala_policy.policy import JalaPolicy

from .model import JalaPretrainModel


def export_policy(model: JalaPretrainModel, directory: str | Path) -> Path:
    cfg = copy.deepcopy(model.config.model)
    cfg.backbone.freeze_vision = True  # the post-training default (paper B.1)
    head = FlowMatchingActionHead(cfg.action_head, context_dim=model.backbone.hidden_size).to(model.device)
    policy = JalaPolicy(cfg, model.backbone, model.texture_encoder, model.lsp, head)
    policy.save_pretrained(directory)
    return Path(directory)
