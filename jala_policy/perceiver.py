"""Latent Action Perceiver (LAP) / Latent State Perceiver (LSP), paper A.2.

Both are the same module: learnable latent queries read a pair of frames' texture features (DINOv2) through
2 layers of [cross-attention latents->features, self-attention over latents, feed-forward], then a 2-layer MLP
maps each latent into the LLM width with the channel dimension doubled and split into a left-hand and a
right-hand head; each sample picks its head. LAP reads the chunk's boundary frames (v_t, v_{t+delta}); LSP
reads the first frame twice (v_0, v_0).

Parameter groups for the decoupled EMA (eq. 6-7): the *queries* are the learnable latent queries; the
*backbone* is everything else of the perceiver (attention, feed-forward, frame embedding, output MLP).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import Dinov2Config, Dinov2Model

from .config import PerceiverConfig

LEFT_HAND, RIGHT_HAND = 0, 1
DINOV2_HF_REPO = "facebook/dinov2-base"


class TextureEncoder(nn.Module):
    """Frozen DINOv2 patch features (N, tokens, dim) of uint8-derived, ImageNet-normalised images."""

    def __init__(self, config: PerceiverConfig, *, load_weights: bool = True, model: Dinov2Model | None = None):
        """``model``: an already loaded DINOv2 (a saved policy's ``texture_encoder/``); else built from the
        preset (``load_weights``: from ``encoder_weights_dir``)."""
        super().__init__()
        if model is not None:
            self.model = model
        elif config.encoder_preset == "dinov2-base" and load_weights:
            if not config.encoder_weights_dir:
                from .backbone import MissingWeightsError
                raise MissingWeightsError(
                    f"texture encoder dinov2-base needs perceiver.encoder_weights_dir: a local {DINOV2_HF_REPO} "
                    "directory")
            path = Path(config.encoder_weights_dir).expanduser()
            if not (path / "config.json").is_file():
                from .backbone import MissingWeightsError
                raise MissingWeightsError(f"DINOv2 weights directory {path} is missing or has no config.json; "
                                          f"download {DINOV2_HF_REPO} there first")
            self.model = Dinov2Model.from_pretrained(path)
        elif config.encoder_preset == "dinov2-base":
            self.model = Dinov2Model(Dinov2Config(image_size=config.encoder_image_size))  # real sizes, random
        else:
            self.model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                  intermediate_size=64, image_size=config.encoder_image_size,
                                                  patch_size=14))
        self.image_size = config.encoder_image_size
        from .backbone import IMAGENET_MEAN, IMAGENET_STD

        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def train(self, mode: bool = True):  # stays in eval mode: frozen feature extractor
        super().train(mode)
        self.model.eval()
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) RGB -> ImageNet-normalised float (N, 3, S, S) at ``image_size`` (bilinear,
        antialiased): the one preprocessing for serving (JalaPolicy) and pretraining alike."""
        x = images.to(self.pixel_mean.device).permute(0, 3, 1, 2).float().div_(255.0)
        x = nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                                      align_corners=False)
        return (x - self.pixel_mean) / self.pixel_std

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: ImageNet-normalised (N, 3, S, S) at ``image_size``."""
        return self.model(pixel_values=pixel_values).last_hidden_state


class _Attention(nn.Module):
    """Pre-norm residual attention. Cross-attention (``cross=True``) normalises its context with its own
    LayerNorm; self-attention reads the normalised queries as keys/values and so owns no context norm."""

    def __init__(self, dim: int, heads: int, cross: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if cross else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        q = self.norm_q(x)
        if (context is None) != (self.norm_kv is None):
            raise ValueError("cross-attention needs a context; self-attention takes none")
        kv = q if context is None else self.norm_kv(context)
        return x + self.attn(q, kv, kv, need_weights=False)[0]


class _PerceiverLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.cross = _Attention(dim, heads, cross=True)
        self.self_attn = _Attention(dim, heads, cross=False)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, latents: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        latents = self.cross(latents, features)
        latents = self.self_attn(latents)
        return latents + self.ff(latents)


class LatentPerceiver(nn.Module):
    """Frame pair -> (B, num_latents, llm_hidden) latents, through the hand-specific output head."""

    def __init__(self, config: PerceiverConfig, feature_dim: int, llm_hidden: int):
        super().__init__()
        self.config = config
        self.llm_hidden = llm_hidden
        self.queries = nn.Parameter(torch.randn(config.num_latents, config.width) * 0.02)
        self.input_proj = nn.Linear(feature_dim, config.width)
        self.frame_embed = nn.Parameter(torch.zeros(2, config.width))  # which frame of the pair a token is from
        self.layers = nn.ModuleList(_PerceiverLayer(config.width, config.num_heads) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.width)
        # 2-layer MLP into the LLM width, channels doubled: [left head | right head].
        self.out_mlp = nn.Sequential(nn.Linear(config.width, 2 * llm_hidden), nn.GELU(),
                                     nn.Linear(2 * llm_hidden, 2 * llm_hidden))

    def query_parameters(self) -> list[nn.Parameter]:
        return [self.queries]

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "queries"]

    def forward(self, first_features: torch.Tensor, second_features: torch.Tensor,
                hand: torch.Tensor | int = RIGHT_HAND) -> torch.Tensor:
        """first/second_features: (B, tokens, feature_dim) of the two frames; hand: (B,) 0 = left, 1 = right."""
        b = first_features.shape[0]
        feats = torch.cat([self.input_proj(first_features) + self.frame_embed[0],
                           self.input_proj(second_features) + self.frame_embed[1]], dim=1)
        latents = self.queries.unsqueeze(0).expand(b, -1, -1)
        for layer in self.layers:
            latents = layer(latents, feats)
        out = self.out_mlp(self.norm(latents)).view(b, self.config.num_latents, 2, self.llm_hidden)
        hand = torch.as_tensor(hand, device=out.device, dtype=torch.long)
        if hand.ndim == 0:
            hand = hand.expand(b)
        if hand.shape != (b,) or bool(((hand != LEFT_HAND) & (hand != RIGHT_HAND)).any()):
            raise ValueError(f"hand must be 0 (left) or 1 (right) per sample, got {hand.tolist()}")
        return out[torch.arange(b, device=out.device), :, hand]


@torch.no_grad()
def ema_update_perceivers(lap: LatentPerceiver, lsp: LatentPerceiver, alpha: float = 0.999) -> None:
    """Decoupled EMA of paper eq. 6-7, in place:

        theta_b^LAP <- alpha * theta_b^LAP + (1 - alpha) * theta_b^LSP     (LAP backbone follows LSP)
        theta_q^LSP <- alpha * theta_q^LSP + (1 - alpha) * theta_q^LAP     (LSP queries follow LAP)

    LAP's queries and LSP's backbone are left untouched.
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"EMA alpha must be in [0, 1), got {alpha}")
    lap_b, lsp_b = lap.backbone_parameters(), lsp.backbone_parameters()
    if len(lap_b) != len(lsp_b):
        raise ValueError("LAP and LSP must have the same structure")
    for dst, src in zip(lap_b, lsp_b):
        dst.mul_(alpha).add_(src.detach().to(dst.dtype), alpha=1.0 - alpha)
    for dst, src in zip(lsp.query_parameters(), lap.query_parameters()):
        dst.mul_(alpha).add_(src.detach().to(dst.dtype), alpha=1.0 - alpha)
