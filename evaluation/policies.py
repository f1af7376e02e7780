"""The policies a simulated rollout can run, each with the policy interface of ``jala_runtime.loop``:
``predict(images, instruction, proprio, timestamp=, seed=) -> TimedChunk``."""
from __future__ import annotations

from pathlib import Path

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

    def predict(self, images, instruction: str, proprio, timestamp: float | None = None,
                seed: int | None = None) -> TimedChunk:
        return self.policy.predict(images, instruction, proprio, timestamp=timestamp, seed=seed)
