"""Flow-matching DiT action head, GR00T N1.5 style (paper B.1).

Blocks alternate: even blocks cross-attend from the action-side tokens to the predictive embeddings, odd
blocks self-attend over [proprio state token, noisy action tokens]. Each attention is preceded by an adaptive
LayerNorm whose scale/shift come from the flow-matching time; each feed-forward by a plain LayerNorm.

Flow-matching convention (one consistent choice)
    path      A^t = t * A + (1 - t) * eps          t = 0 is pure noise, t = 1 is the data
    velocity  dA^t/dt = A - eps                    the regression target of the head
    loss      || V(h, A^t, q, t) - (A - eps) ||^2
    sampling  A <- A + (1/N) * V, for t = 0, 1/N, ..., (N-1)/N, from A ~ N(0, I)   (forward Euler)

The paper's eq. 8 writes the same path A^tau = tau*A + (1-tau)*eps but the target (eps - A), which is the
negative of that path's velocity; integrating it from noise would move away from the data. We keep the path and
use its true velocity, as GR00T N1.5's code does.

Training times follow GR00T N1.5's code: s ~ Beta(1.5, 1), t = (noise_s - s) / noise_s with noise_s = 0.999, so
noisy times (t near 0) are the most likely; t is bucketed into 1000 timestep buckets (clamped to [0, 999]).

Width: the default (``paper`` preset) is the paper's hidden 2048 with 32 heads over the backbone's 1536-wide
embeddings (944 M parameters); GR00T N1.5 itself is 1536 wide with a 2048-wide context (~550 M): the
``gr00t-n1.5`` preset of jala_policy.config.ACTION_HEAD_PRESETS gives its width.

The cross-attention keys/values of the embeddings do not depend on t: ``prepare_context`` computes them once
per chunk and the N denoising steps reuse them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ActionHeadConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class AdaLayerNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.to_scale_shift = nn.Linear(dim, 2 * dim)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.to_scale_shift(F.silu(temb)).unsqueeze(1).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift


class _DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ff_mult: int, cross: bool, context_dim: int):
        super().__init__()
        self.cross, self.heads = cross, heads
        self.norm1 = AdaLayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        kv_in = context_dim if cross else dim
        self.to_k = nn.Linear(kv_in, dim)
        self.to_v = nn.Linear(kv_in, dim)
        self.to_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(approximate="tanh"),
                                nn.Linear(ff_mult * dim, dim))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split(self.to_k(context)), self._split(self.to_v(context))

    def forward(self, x: torch.Tensor, temb: torch.Tensor,
                kv: tuple[torch.Tensor, torch.Tensor] | None, context_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(x, temb)
        q = self._split(self.to_q(h))
        if self.cross:
            k, v = kv
            attn_mask = None if context_mask is None else context_mask[:, None, None, :]
        else:
            k, v = self._split(self.to_k(h)), self._split(self.to_v(h))
            attn_mask = None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        b, _, n, _ = out.shape
        x = x + self.to_out(out.transpose(1, 2).reshape(b, n, -1))
        return x + self.ff(self.norm2(x))


class FlowMatchingActionHead(nn.Module):
    def __init__(self, config: ActionHeadConfig, context_dim: int):
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.state_encoder = nn.Sequential(nn.Linear(config.state_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.action_encoder = nn.Linear(config.action_dim, d)
        self.action_pos = nn.Parameter(torch.zeros(config.action_horizon, d))
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(
            _DiTBlock(d, config.num_heads, config.ff_mult, cross=(i % 2 == 0), context_dim=context_dim)
            for i in range(config.num_layers))
        self.norm_out = AdaLayerNorm(d)
        self.action_decoder = nn.Linear(d, config.action_dim)
        nn.init.normal_(self.action_pos, std=0.02)

    # ------------------------------------------------------------------------------------------- model
    def prepare_context(self, embeddings: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention keys/values of the predictive embeddings, one pair per cross block. Compute once
        per chunk; they do not depend on the flow time."""
        embeddings = embeddings.to(self.action_encoder.weight.dtype)
        return [blk.context_kv(embeddings) for blk in self.blocks if blk.cross]

    def velocity(self, noisy_actions: torch.Tensor, t: torch.Tensor, state: torch.Tensor,
                 context_kv: list[tuple[torch.Tensor, torch.Tensor]],
                 context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted velocity (B, horizon, action_dim). t in [0, 1], shape (B,)."""
        dtype = self.action_encoder.weight.dtype
        buckets = (t * self.config.num_timestep_buckets).floor().clamp(0, self.config.num_timestep_buckets - 1)
        temb = self.time_mlp(timestep_embedding(buckets, self.config.hidden_size).to(dtype))
        x = torch.cat([self.state_encoder(state.to(dtype)).unsqueeze(1),
                       self.action_encoder(noisy_actions.to(dtype)) + self.action_pos], dim=1)
        kv_iter = iter(context_kv)
        for blk in self.blocks:
            x = blk(x, temb, next(kv_iter) if blk.cross else None, context_mask)
        return self.action_decoder(self.norm_out(x[:, 1:], temb)).float()

    # ---------------------------------------------------------------------------------------- training
    def sample_time(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training flow times (B,): t = (noise_s - s) / noise_s, s ~ Beta(alpha, beta), as GR00T N1.5."""
        c = self.config
        beta = torch.distributions.Beta(torch.tensor(c.noise_beta_alpha), torch.tensor(c.noise_beta_beta))
        if generator is None:
            s = beta.sample((batch,))
        else:  # Beta sampling has no generator argument: inverse CDF of Beta(a, 1) is u^(1/a) when b == 1
            if c.noise_beta_beta != 1.0:
                raise ValueError("seeded time sampling supports Beta(a, 1) only")
            s = torch.rand(batch, generator=generator, device=generator.device).pow(1.0 / c.noise_beta_alpha)
        return ((c.noise_s - s) / c.noise_s).to(device)

    def loss(self, embeddings: torch.Tensor, state: torch.Tensor, actions: torch.Tensor,
             context_mask: torch.Tensor | None = None, action_mask: torch.Tensor | None = None,
             generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
             t: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
        """Flow-matching loss on normalised actions (B, horizon, action_dim). ``noise`` (like actions) and ``t``
        (B,) may be given (post-training draws them per sample, so a sample's loss does not depend on the batch
        it is in); otherwise they are drawn here. ``reduction``: "mean" over the counted elements, or "sum"
        (the caller divides by the count over all micro-batches and ranks)."""
        b = actions.shape[0]
        if t is None:
            t = self.sample_time(b, actions.device, generator)
        if noise is None:
            noise = torch.randn(actions.shape, generator=generator, device=actions.device, dtype=torch.float32) \
                if generator is not None else torch.randn_like(actions, dtype=torch.float32)
        t = t.to(actions.device, torch.float32)
        noise = noise.to(actions.device, torch.float32)
        tt = t.view(b, 1, 1)
        noisy = tt * actions + (1.0 - tt) * noise
        target = actions - noise
        pred = self.velocity(noisy, t, state, self.prepare_context(embeddings), context_mask)
        err = (pred - target.float()) ** 2
        if action_mask is not None:  # (B, horizon) or (B, horizon, dim): padded steps do not count
            m = action_mask.float()
            m = m.unsqueeze(-1).expand_as(err) if m.ndim == 2 else m
            err = err * m
            count = m.sum()
        else:
            count = torch.tensor(float(err.numel()), device=err.device)
        if reduction == "sum":
            return err.sum()
        if reduction != "mean":
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        return err.sum() / count.clamp(min=1.0)

    # ---------------------------------------------------------------------------------------- sampling
    def sample_noise(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """The sampler's starting point A^0 ~ N(0, I), (B, horizon, action_dim) float32."""
        c = self.config
        return torch.randn((batch, c.action_horizon, c.action_dim), generator=generator, device=device,
                           dtype=torch.float32)

    def denoise(self, embeddings: torch.Tensor, state: torch.Tensor, noise: torch.Tensor,
                num_steps: int | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Forward-Euler integration of ``noise`` from t = 0 to t = 1. Returns normalised actions (float32).
        Every inference backend runs exactly this (eager, CUDA graph, ONNX export via :class:`EulerSampler`)."""
        n = num_steps or self.config.num_inference_steps
        b = embeddings.shape[0]
        kv = self.prepare_context(embeddings)
        x = noise.float()
        dt = 1.0 / n
        for i in range(n):
            t = torch.full((b,), i * dt, device=embeddings.device)
            x = x + dt * self.velocity(x, t, state, kv, context_mask)
        return x

    @torch.no_grad()
    def sample(self, embeddings: torch.Tensor, state: torch.Tensor, num_steps: int | None = None,
               generator: torch.Generator | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Forward-Euler integration from noise (t = 0) to data (t = 1). Returns normalised actions."""
        noise = self.sample_noise(embeddings.shape[0], embeddings.device, generator)
        return self.denoise(embeddings, state, noise, num_steps, context_mask)


class EulerSampler(nn.Module):
    """The head's whole N-step Euler sampler as one module: (embeddings, state, noise) -> normalised actions.

    The unit that is exported to ONNX (jala_policy.onnx_head) and captured in a CUDA graph
    (jala_policy.fast_inference): N is fixed at construction, so the graph is a static, unrolled loop. Inputs and
    output are float32 whatever the head's dtype (the head casts inside).
    """

    def __init__(self, head: FlowMatchingActionHead, num_steps: int | None = None):
        super().__init__()
        self.head = head
        self.num_steps = num_steps or head.config.num_inference_steps

    def forward(self, embeddings: torch.Tensor, state: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.head.denoise(embeddings, state, noise, self.num_steps)
