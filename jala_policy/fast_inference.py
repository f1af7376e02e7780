"""Pieces of the fast inference path of ``JalaPolicy.predict`` (``InferenceConfig.fast``) and its stage timer.

The eager path (``JalaPolicy.predictive_embeddings`` + ``FlowMatchingActionHead.sample``) stays the reference;
everything here computes the same result up to float rounding (tests/policy/test_fast_inference.py):

- :class:`FramePreprocessor`: camera frames (uint8 HWC) to the backbone's and the texture encoder's normalised
  pixels with torch ops on the policy's device, from one upload of the frames (through a reused pinned staging
  buffer on CUDA), one float conversion and the /255, mean and std folded into one multiply-add.
- :class:`CudaGraphEulerSampler`: the head's N Euler steps captured once in a CUDA graph (static batch-1 shapes,
  warm-up and capture at load) and replayed per chunk; the result is read back through a pinned host buffer.
  CUDA only: on other devices the fast path runs the same sampler eagerly.
- the instruction cache is :class:`jala_policy.backbone.EncodedPrompt`, kept by the policy while the
  instruction is unchanged.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from .action_head import EulerSampler, FlowMatchingActionHead
from .backbone import IMAGENET_MEAN, IMAGENET_STD

STAGES = ("preprocess", "vision", "llm", "head")


class StageTimer:
    """Wall time per stage of one ``predict`` call, in ms. With ``synchronize`` (``JalaPolicy.profile``) it
    waits for the GPU at each lap so the time lands in the stage that queued the work."""

    def __init__(self, device: torch.device, synchronize: bool):
        self.sync = synchronize and device.type == "cuda"
        self.device = device
        self.start = self.last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        if self.sync:
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.ms[stage] = self.ms.get(stage, 0.0) + (now - self.last) * 1e3
        self.last = now


class FramePreprocessor:
    """uint8 frames (views, H, W, 3) -> (backbone pixels (views, 3, S, S), texture pixels (1, 3, s, s) of the
    first view), both normalised with the ImageNet statistics, in the policy's dtype on its device.

    Matches ``JalaBackbone.preprocess_images`` and ``TextureEncoder.preprocess`` (bilinear, antialiased,
    align_corners=False) to float32 rounding: resizing is linear, so it runs on 0..255 values and the
    normalisation (x / 255 - mean) / std = x * a + b comes after it as one multiply-add."""

    def __init__(self, backbone_size: int, texture_size: int | None, device: torch.device, dtype: torch.dtype):
        self.backbone_size, self.texture_size = backbone_size, texture_size
        self.device, self.dtype = device, dtype
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std
        self._staging: torch.Tensor | None = None  # pinned host buffer (CUDA), reused while the frame size holds

    def upload(self, frames: np.ndarray) -> torch.Tensor:
        host = torch.from_numpy(frames)
        if self.device.type != "cuda":
            return host
        if self._staging is None or self._staging.shape != host.shape:
            self._staging = torch.empty(host.shape, dtype=torch.uint8, pin_memory=True)
        self._staging.copy_(host)
        # The staging buffer is rewritten on the next call only after predict has read its chunk back (a sync).
        return self._staging.to(self.device, non_blocking=True)

    def _resize(self, x: torch.Tensor, size: int) -> torch.Tensor:
        if x.shape[-2:] == (size, size):
            return x
        return nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    def __call__(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.upload(frames).permute(0, 3, 1, 2).float()
        pixels = torch.addcmul(self.shift, self._resize(x, self.backbone_size), self.scale).to(self.dtype)
        texture = None
        if self.texture_size is not None:
            small = nn.functional.interpolate(x[:1], size=(self.texture_size, self.texture_size), mode="bilinear",
                                              antialias=True, align_corners=False)
            texture = torch.addcmul(self.shift, small, self.scale).to(self.dtype)
        return pixels, texture


class CudaGraphEulerSampler:
    """The head's whole Euler sampler replayed from one CUDA graph; called like ``FlowMatchingActionHead.denoise``
    on batch 1. Captured at construction (after a warm-up on a side stream), so the first chunk is not late.
    Returns the normalised actions in a pinned host tensor (1, horizon, action_dim), valid until the next call."""

    def __init__(self, head: FlowMatchingActionHead, *, context_len: int, context_dim: int, device: torch.device,
                 dtype: torch.dtype, warmup_runs: int = 3):
        if device.type != "cuda":
            raise ValueError("CUDA graph capture needs a CUDA device")
        c = head.config
        self.device = device
        self.sampler = EulerSampler(head)
        self.embeddings = torch.zeros((1, context_len, context_dim), device=device, dtype=dtype)
        self.state = torch.zeros((1, c.state_dim), device=device)
        self.noise = torch.zeros((1, c.action_horizon, c.action_dim), device=device)
        self.actions_host = torch.empty((1, c.action_horizon, c.action_dim), pin_memory=True)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(warmup_runs):
                self.sampler(self.embeddings, self.state, self.noise)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.actions = self.sampler(self.embeddings, self.state, self.noise)
        torch.cuda.synchronize(device)

    def __call__(self, embeddings: torch.Tensor, state: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        self.embeddings.copy_(embeddings)
        self.state.copy_(state)
        self.noise.copy_(noise)
        self.graph.replay()
        self.actions_host.copy_(self.actions, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return self.actions_host
