"""The policies a simulated rollout can run, each with the policy interface of ``jala_runtime.loop``:
``predict(images, instruction, proprio, timestamp=, seed=) -> TimedChunk``.

``load_policy(spec, world)`` picks one from its spec: ``expert``, a behaviour-cloning baseline directory
(``training.bc_baseline``: ``bc_policy.pt``) or a ``JalaPolicy`` checkpoint (``config.json`` +
``policy_heads.safetensors``). A policy's ``input_image_hw`` (H, W), where it has one, is the camera frame size
it wants; ``policy_input_hw(spec)`` reads it without loading the policy, so the world can render at it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embodiment import ACTION_DT, ACTION_HORIZON
from hardware.sim.expert import make_expert
from hardware.sim.world import SimWorld
from jala_runtime.chunk import TimedChunk


class ExpertPolicy:
    """The simulated world's scripted expert (it reads the world's state, not the images)."""

    action_dt = ACTION_DT
    uses_images = False  # the rollout does not render frames for it

    def __init__(self, world: SimWorld):
        self.world = world
        self.expert = make_expert(world)
        self.horizon = int(getattr(self.expert, "horizon", ACTION_HORIZON))

    def reset(self) -> None:
        self.expert.reset()

    @property
    def done(self) -> bool:
        return self.expert.done

    def predict(self, images, instruction: str, proprio, timestamp: float | None = None,
                seed: int | None = None) -> TimedChunk:
        stamp = self.world.sim_time if timestamp is None else timestamp
        return TimedChunk.at_rate(self.expert.act(self.world), stamp, self.action_dt)


class CheckpointPolicy:
    """A ``JalaPolicy`` checkpoint. One whose number of views differs from the world's cameras is refused
    (``jala_policy.check_camera_views``, the same check and message as the ROS policy node), never fed a subset
    of the views."""

    def __init__(self, directory: str | Path, world: SimWorld, device: str | None = None):
        from jala_policy.policy import JalaPolicy, check_camera_views  # heavy import only when a checkpoint is used

        self.policy = JalaPolicy.from_pretrained(directory, device=device)
        check_camera_views(self.policy.config.num_views, list(world.cameras))
        self.action_dt = float(self.policy.config.action_dt)
        self.horizon = int(self.policy.config.action_head.action_horizon)
        self.input_image_hw = self.policy.config.input_image_hw  # (H, W) it refuses other frame sizes; or None
        self.execute_steps = self.policy.config.inference.execute_steps  # None: the runtime's default

    def predict(self, images, instruction: str, proprio, timestamp: float | None = None,
                seed: int | None = None) -> TimedChunk:
        return self.policy.predict(images, instruction, proprio, timestamp=timestamp, seed=seed)


class BCPolicy:
    """A behaviour-cloning baseline (``training.bc_baseline``). It takes frames of any size and resizes them to
    its 96x72 input with the function training used; ``input_image_hw`` is the size its demonstrations were
    recorded at (the world renders at it unless told otherwise, so the pixels match training's). The arm target
    is the current joints plus the predicted offsets; hand targets are clipped to 0..1000. The instruction is
    not used (one baseline per task)."""

    uses_images = True

    def __init__(self, directory: str | Path, world: SimWorld, device: str | None = None):
        import torch

        from training.bc_baseline.model import load_bc

        self.world = world
        self.device = torch.device(device or "cpu")
        self.net, self.cfg = load_bc(directory, device=self.device)
        cams = list(world.cameras)
        if self.cfg.num_views != len(cams):
            raise ValueError(f"{directory}: the baseline was trained on {self.cfg.num_views} camera view(s) "
                             f"({', '.join(self.cfg.camera_keys)}), the world has {len(cams)} ({', '.join(cams)})")
        self.action_dt = float(self.cfg.action_dt)
        self.horizon = int(self.cfg.horizon)
        self.input_image_hw = tuple(self.cfg.record_hw)
        self._state_norm = self.cfg.state_norm()

    def reset(self) -> None:
        pass

    def predict_actions(self, images, proprio) -> np.ndarray:
        """(horizon, 13) targets in robot units for one observation."""
        import torch

        from training.bc_baseline.model import BCNet, decode_actions, resize_frames

        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        if len(images) != self.cfg.num_views:
            raise ValueError(f"expected {self.cfg.num_views} camera image(s), got {len(images)}")
        views = np.stack([resize_frames(np.asarray(img), self.cfg.image_hw) for img in images])
        q = torch.as_tensor(np.asarray(proprio, dtype=np.float64)).reshape(1, -1)
        with torch.no_grad():
            pixels = BCNet.to_float(torch.from_numpy(views)[None]).to(self.device)
            out = self.net(pixels, self._state_norm.normalize(q).float().to(self.device))
            actions = decode_actions(self.cfg, q, out.double().cpu())[0]
        return actions.numpy()

    def predict(self, images, instruction: str, proprio, timestamp: float | None = None,
                seed: int | None = None) -> TimedChunk:
        stamp = self.world.sim_time if timestamp is None else timestamp
        return TimedChunk.at_rate(self.predict_actions(images, proprio), stamp, self.action_dt)


class PolicySpecError(ValueError):
    """A --policy spec names nothing this evaluation can run."""


def policy_kind(spec: str) -> str:
    """'expert' | 'bc' | 'checkpoint' for a policy spec; PolicySpecError (one line) for anything else."""
    if spec == "expert":
        return "expert"
    d = Path(spec).expanduser()
    if not d.is_dir():
        raise PolicySpecError(f"policy {spec!r} is neither 'expert' nor an existing checkpoint directory")
    if (d / "bc_policy.pt").is_file():
        return "bc"
    if (d / "config.json").is_file() and (d / "policy_heads.safetensors").is_file():
        return "checkpoint"
    raise PolicySpecError(f"policy directory {spec} is not a checkpoint: it has neither bc_policy.pt (a "
                          "training.bc_baseline run) nor config.json + policy_heads.safetensors (a JalaPolicy)")


def policy_input_hw(spec: str) -> tuple[int, int] | None:
    """The camera frame size (H, W) the policy ``spec`` declares, read from its files without loading it."""
    kind = policy_kind(spec)
    d = Path(spec).expanduser()
    if kind == "bc":
        hw = json.loads((d / "bc_config.json").read_text()).get("record_hw")
        return (int(hw[0]), int(hw[1])) if hw else None
    if kind == "checkpoint":
        from jala_policy.config import ConfigError, JalaPolicyConfig

        try:
            hw = JalaPolicyConfig.from_dict(json.loads((d / "config.json").read_text())).input_image_hw
        except (ConfigError, ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            raise PolicySpecError(f"checkpoint {spec}: config.json is not a valid JalaPolicyConfig: {exc}") from exc
        return tuple(hw) if hw is not None else None
    return None


def load_policy(spec: str, world: SimWorld, device: str | None = None):
    """An ``ExpertPolicy``, ``BCPolicy`` or ``CheckpointPolicy`` for ``spec`` (see the module docstring)."""
    kind = policy_kind(spec)
    if kind == "expert":
        return ExpertPolicy(world)
    if kind == "bc":
        return BCPolicy(spec, world, device=device)
    return CheckpointPolicy(spec, world, device=device)
