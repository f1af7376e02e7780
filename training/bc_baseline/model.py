"""The behaviour-cloning baseline's network and the image preprocessing shared by training and evaluation.

Each camera view (resized to 96x72, W x H) goes through a small conv net whose last layer gives K heat maps; a
spatial softmax turns each into an expected (x, y) keypoint in [-1, 1]. The keypoints of all views and the
normalised 13-D proprio go through an MLP to a (horizon, 13) chunk in normalised units:

- arm columns (the first 7): offsets from the current arm joints, divided by ``arm_offset_scale`` (so a zero
  output keeps the arm where it is);
- hand columns: absolute targets, min-max normalised to [-1, 1] with the dataset's action statistics.

``BCConfig`` holds everything needed to rebuild the network and undo the normalisation (``bc_config.json``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodiment import ACTION_DIM, ARM_DOF
from jala_policy.normalization import NormalizationStats

IMAGE_HW = (72, 96)  # (H, W) the network sees
SHIFT_PX = 4


def resize_frames(frames: np.ndarray, hw: tuple[int, int] = IMAGE_HW) -> np.ndarray:
    """uint8 (..., H, W, 3) RGB frames -> uint8 (..., h, w, 3), antialiased bilinear (the same in training and at
    evaluation time, so the policy sees the pixels it was trained on)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (..., H, W, 3) frames, got {frames.dtype} {frames.shape}")
    lead, (h, w) = frames.shape[:-3], frames.shape[-3:-1]
    if (h, w) == tuple(hw):
        return frames.copy()
    x = torch.from_numpy(np.ascontiguousarray(frames.reshape(-1, h, w, 3))).permute(0, 3, 1, 2).float()
    out = []
    for part in torch.split(x, 256):  # bounded memory for whole episodes
        y = F.interpolate(part, size=tuple(hw), mode="bilinear", antialias=True, align_corners=False)
        out.append(y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    return torch.cat(out).numpy().reshape(*lead, *hw, 3)


def shift_augment(images: torch.Tensor, pad: int = SHIFT_PX, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Random shift of each sample by up to +-``pad`` pixels: replicate-pad, then crop back at a random offset.
    ``images``: (B, C, H, W); the same shift applies to all channels (views) of a sample."""
    b, c, h, w = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate").to(images.dtype)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


@dataclass
class BCConfig:
    state_stats: dict  # NormalizationStats.to_dict() of the 13-D state
    action_stats: dict  # of the 13-D actions (the hand columns are used)
    arm_offset_scale: list  # (7,) per arm joint: offset = output * scale
    camera_keys: list  # dataset camera features, in the order of the world's cameras
    record_hw: tuple  # (H, W) the demonstrations were recorded at (the evaluation renders at it)
    instruction: str = ""
    instructions: list = field(default_factory=list)
    image_hw: tuple = IMAGE_HW
    horizon: int = 16
    action_dt: float = 1.0 / 15.0
    keypoints: int = 32
    channels: tuple = (32, 64, 64)
    hidden: int = 512

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BCConfig":
        d = dict(d)
        for k in ("record_hw", "image_hw", "channels"):
            if k in d:
                d[k] = tuple(int(v) for v in d[k])
        return cls(**d)

    @property
    def num_views(self) -> int:
        return len(self.camera_keys)

    def state_norm(self) -> NormalizationStats:
        return NormalizationStats.from_dict(self.state_stats)

    def action_norm(self) -> NormalizationStats:
        return NormalizationStats.from_dict(self.action_stats)


class SpatialSoftmax(nn.Module):
    """(B, K, H, W) heat maps -> (B, 2K) expected (x, y) positions in [-1, 1], with a learned temperature."""

    def __init__(self):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, k, h, w = x.shape
        attn = torch.softmax(x.reshape(b, k, h * w) / self.log_temperature.exp(), dim=-1).reshape(b, k, h, w)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        return torch.cat([(attn.sum(2) * xs).sum(-1), (attn.sum(3) * ys).sum(-1)], dim=1)


class BCNet(nn.Module):
    """Pixels of V views (``to_float`` of uint8 (B, V, H, W, 3)) + normalised state (B, 13) -> normalised chunk
    (B, horizon, 13). One encoder is shared by the views; their keypoints are concatenated. Channel counts must
    be multiples of 8 (GroupNorm)."""

    def __init__(self, cfg: BCConfig):
        super().__init__()
        self.cfg = cfg
        c1, c2, c3 = cfg.channels
        self.encoder = nn.Sequential(  # 72x96 -> 36x48 -> 18x24
            nn.Conv2d(3, c1, 5, stride=2, padding=2), nn.GroupNorm(8, c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.GroupNorm(8, c2), nn.ReLU(),
            nn.Conv2d(c2, c3, 3, padding=1), nn.GroupNorm(8, c3), nn.ReLU(),
            nn.Conv2d(c3, cfg.keypoints, 1),
            SpatialSoftmax(),
        )
        feat = 2 * cfg.keypoints * cfg.num_views + ACTION_DIM
        self.head = nn.Sequential(
            nn.Linear(feat, cfg.hidden), nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.horizon * ACTION_DIM),
        )

    @staticmethod
    def to_float(images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, V, H, W, 3) -> float (B, V*3, H, W) in [-0.5, 0.5]."""
        b, v, h, w, _ = images.shape
        return (images.permute(0, 1, 4, 2, 3).reshape(b, v * 3, h, w).float() / 255.0) - 0.5

    def forward(self, pixels: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``pixels``: float (B, V*3, H, W) from ``to_float`` (after any augmentation); ``state`` normalised."""
        b = pixels.shape[0]
        views = pixels.reshape(b * self.cfg.num_views, 3, *pixels.shape[-2:])
        keypoints = self.encoder(views).reshape(b, -1)
        out = self.head(torch.cat([keypoints, state], dim=1))
        return out.reshape(b, self.cfg.horizon, ACTION_DIM)


# ------------------------------------------------------------------------------ targets <-> robot actions
def encode_targets(cfg: BCConfig, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Recorded chunks (B, horizon, 13) in robot units -> the network's normalised targets."""
    scale = torch.as_tensor(cfg.arm_offset_scale, dtype=actions.dtype)
    arm = (actions[..., :ARM_DOF] - state[:, None, :ARM_DOF]) / scale
    hand = cfg.action_norm().normalize(actions)[..., ARM_DOF:]
    return torch.cat([arm, hand], dim=-1)


def decode_actions(cfg: BCConfig, state: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The network's output -> chunks (B, horizon, 13) in robot units: arm = current joints + offsets, hand
    un-normalised and clipped to the Inspire range 0..1000."""
    scale = torch.as_tensor(cfg.arm_offset_scale, dtype=out.dtype)
    arm = state[:, None, :ARM_DOF] + out[..., :ARM_DOF] * scale
    full = cfg.action_norm().unnormalize(out)
    hand = full[..., ARM_DOF:].clamp(0.0, 1000.0)
    return torch.cat([arm, hand], dim=-1)


# ------------------------------------------------------------------------------------------ saving
WEIGHTS_FILE = "bc_policy.pt"
CONFIG_FILE = "bc_config.json"


def save_bc(directory, net: BCNet, cfg: BCConfig, extra: dict | None = None) -> None:
    """``<directory>/bc_policy.pt`` (the state dict) and ``bc_config.json``, each written atomically."""
    import json
    from pathlib import Path

    from training.files import atomic_write

    d = Path(directory)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    atomic_write(d / WEIGHTS_FILE, lambda f: torch.save(state, f))
    doc = dict(cfg.to_dict(), **({"training": extra} if extra else {}))
    atomic_write(d / CONFIG_FILE, lambda f: f.write(json.dumps(doc, indent=2).encode()))


def load_bc(directory, device: str | torch.device = "cpu") -> tuple[BCNet, BCConfig]:
    import json
    from dataclasses import fields
    from pathlib import Path

    d = Path(directory)
    doc = json.loads((d / CONFIG_FILE).read_text())
    names = {f.name for f in fields(BCConfig)}
    cfg = BCConfig.from_dict({k: v for k, v in doc.items() if k in names})
    net = BCNet(cfg)
    net.load_state_dict(torch.load(d / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return net.to(device).eval(), cfg
