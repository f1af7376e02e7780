"""The pretraining model: InternVL3 backbone with motion vocabulary, frozen texture encoder, LAP and LSP.

Forward pass of one micro-batch (paper A.2-A.3):
1. LSP reads the first frame twice, (v_0, v_0), through the head of the target chunk's hand; its latents fill
   the ``<latent>`` slots of the sequence (as at inference, jala_policy.JalaPolicy.state_latents).
2. The backbone reads image v_0, the state latents, the instruction and the hybrid-masked motion chunks.
3. MCP: cross-entropy of the motion-code logits at the masked positions against the original codes (video-only
   samples have no labels, so they add nothing).
4. Align: LAP reads each aligned chunk's boundary frames (v_t, v_{t+1}) through that chunk's hand head, giving
   z (n_latents, hidden). The chunk's 128 predictive embeddings h (hidden states at its wrist + finger token
   positions) are mean-pooled in order into n_latents groups and compared with z: 1 - cos (or MSE) per latent,
   averaged over latents.

The model returns per-micro-batch *sums* and *counts*; the trainer divides by the counts over the whole global
batch, so gradient accumulation and data parallelism give exactly the gradient of the global-batch mean.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jala_policy.backbone import JalaBackbone
from jala_policy.perceiver import LatentPerceiver, TextureEncoder

from .config import PretrainConfig


class JalaPretrainModel(nn.Module):
    def __init__(self, config: PretrainConfig, *, load_weights: bool | None = None):
        super().__init__()
        self.config = config
        pc = config.model
        load = config.run.load_backbone_weights if load_weights is None else load_weights
        self.backbone = JalaBackbone.build(pc.backbone, pc.motion, load_weights=load, dtype=torch.float32)
        self.texture_encoder = TextureEncoder(pc.perceiver, load_weights=load)
        self.lap = LatentPerceiver(pc.perceiver, self.texture_encoder.dim, self.backbone.hidden_size)
        self.lsp = LatentPerceiver(pc.perceiver, self.texture_encoder.dim, self.backbone.hidden_size)
        self.lsp.load_state_dict(self.lap.state_dict())  # same structure and weights at the start (A.2)
        if config.loss.ema_only_targets:
            for p in self.lap.backbone_parameters():  # eq. 6: LAP backbone follows LSP by EMA only
                p.requires_grad_(False)
            for p in self.lsp.query_parameters():     # eq. 7: LSP queries follow LAP by EMA only
                p.requires_grad_(False)
        if config.loss.align_stop_grad_lap:  # z is a fixed target: nothing trains the LAP queries
            self.lap.queries.requires_grad_(False)
        self.disable_dropout()

    def disable_dropout(self) -> None:
        """Zero every dropout probability: the sums-and-counts loss must not depend on micro-batch layout."""
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
            if isinstance(m, nn.MultiheadAttention):
                m.dropout = 0.0
        text_cfg = self.backbone.model.config.text_config
        if hasattr(text_cfg, "attention_dropout"):
            text_cfg.attention_dropout = 0.0
        for m in self.backbone.model.modules():
            if hasattr(m, "attention_dropout") and isinstance(m.attention_dropout, float):
                m.attention_dropout = 0.0

    # --------------------------------------------------------------------------------------------- pieces
    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def texture_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.texture_encoder(self.texture_encoder.preprocess(images))

    def latent_actions(self, first: torch.Tensor, second: torch.Tensor, hand: torch.Tensor) -> torch.Tensor:
        """LAP latent actions z (M, n_latents, hidden) of boundary-frame pairs (uint8 (M, H, W, 3))."""
        feats = self.texture_features(torch.cat([first, second]))
        f1, f2 = feats.split(first.shape[0])
        return self.lap(f1, f2, hand.to(self.device))

    def state_latents(self, images: torch.Tensor, hand: torch.Tensor) -> torch.Tensor:
        feats = self.texture_features(images)
        return self.lsp(feats, feats, hand.to(self.device))

    # -------------------------------------------------------------------------------------------- forward
    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        cfg = self.config
        dev = self.device
        ids = batch["input_ids"].to(dev)
        labels = batch["labels"].to(dev)
        latents = None
        if cfg.model.perceiver.use_state_tokens:
            latents = self.state_latents(batch["images"], batch["state_hand"])
        pixels = self.backbone.preprocess_images(batch["images"])
        hidden = self.backbone(ids, batch["attention_mask"], pixels, latents=latents)

        # masked chunk prediction
        sel = labels >= 0
        logits = self.backbone.motion_logits(hidden[sel]).float()
        mcp_sum = F.cross_entropy(logits, labels[sel], reduction="sum")
        with torch.no_grad():
            mcp_correct = (logits.argmax(-1) == labels[sel]).sum()

        # alignment of predictive embeddings with LAP latent actions
        z = self.latent_actions(batch["align_first"], batch["align_second"], batch["align_hand"])
        if cfg.loss.align_stop_grad_lap:
            z = z.detach()
        bidx = batch["align_batch_index"].to(dev)
        pos = batch["align_positions"].to(dev)
        h = hidden[bidx[:, None], pos]                                    # (M, 128, hidden)
        m, n, d = h.shape
        nl = z.shape[1]
        h = h.view(m, nl, n // nl, d).mean(dim=2)
        if cfg.loss.align_distance == "cosine":
            per_latent = 1.0 - F.cosine_similarity(h.float(), z.float(), dim=-1, eps=1e-6)
        else:
            per_latent = (h.float() - z.float()).pow(2).mean(dim=-1)
        align_sum = per_latent.mean(dim=-1).sum()
        return {"mcp_sum": mcp_sum, "mcp_count": sel.sum(), "mcp_correct": mcp_correct,
                "align_sum": align_sum, "align_count": torch.tensor(m, device=dev)}
