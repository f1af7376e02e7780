"""Pipelined inference: when to compute the next chunk.

The chunk computed from the observation at ``stamp`` applies at ``stamp + action_dt * (1..H)``. Its successor
should take over after ``execute_steps`` actions, at ``stamp + action_dt * execute_steps``; so inference for it
starts one (measured) inference latency earlier, never before the current observation. A frame is never used
twice: after a chunk from the frame at ``stamp``, the next one waits for a newer frame.
"""
from __future__ import annotations

import math

import numpy as np

from embodiment import EXECUTE_STEPS

DUE_TOLERANCE_S = 1e-6  # float rounding of absolute times


def execute_steps_for(policy, requested: int | None = None, default: int = EXECUTE_STEPS) -> int:
    """How many actions of each chunk to execute before the next takes over: ``requested`` where it is given
    (> 0: a node parameter, an evaluation flag), else what the policy's checkpoint asks for (a ``JalaPolicy``'s
    ``config.inference.execute_steps``, or a wrapper's ``execute_steps`` attribute), else ``default``."""
    if requested:
        return int(requested)
    preferred = getattr(policy, "execute_steps", None)
    if preferred is None:
        preferred = getattr(getattr(getattr(policy, "config", None), "inference", None), "execute_steps", None)
    return int(preferred) if preferred else int(default)


def next_inference_time(obs_stamp: float, action_dt: float, execute_steps: int, latency_estimate: float) -> float:
    """When to start computing the chunk that takes over ``execute_steps`` actions into the one computed from the
    observation at ``obs_stamp``."""
    return max(obs_stamp, obs_stamp + action_dt * execute_steps - max(0.0, latency_estimate))


class ChunkScheduler:
    """Decides when the next chunk is due. ``latency`` is observation stamp -> chunk out (published / handed to
    the devices), estimated as the 75th percentile of the last ``latency_window`` chunks."""

    def __init__(self, action_dt: float, execute_steps: int, horizon: int, latency_window: int = 20):
        if not action_dt > 0:
            raise ValueError(f"action_dt must be positive, got {action_dt}")
        if not 1 <= execute_steps <= horizon:
            raise ValueError(f"execute_steps must be 1..{horizon} (the chunk horizon), got {execute_steps}")
        self.action_dt = float(action_dt)
        self.execute_steps = int(execute_steps)
        self.latency_window = latency_window
        self.latencies: list[float] = []  # seconds, observation stamp -> chunk out
        self.reset()

    def reset(self) -> None:
        """Start over (policy started): the next chunk is due at once."""
        self.next_time = -math.inf
        self.last_stamp = -math.inf
        self.latency_estimate = 0.0 if not self.latencies else self.latency_estimate

    def due(self, now: float) -> bool:
        return now + DUE_TOLERANCE_S >= self.next_time

    def wait_s(self, now: float) -> float:
        """Seconds until the next chunk is due (0 when it is)."""
        return max(0.0, self.next_time - now)

    def is_new_frame(self, stamp: float) -> bool:
        return stamp > self.last_stamp

    def computing(self, stamp: float) -> None:
        """A chunk is being computed from the frame at ``stamp`` (never again from it)."""
        self.last_stamp = stamp

    def chunk_out(self, stamp: float, at: float) -> float:
        """The chunk from the observation at ``stamp`` went out at ``at``; returns its latency."""
        latency = at - stamp
        self.latencies.append(latency)
        if len(self.latencies) > 2000:
            del self.latencies[:1000]
        self.latency_estimate = float(np.percentile(self.latencies[-self.latency_window:], 75))
        self.next_time = next_inference_time(stamp, self.action_dt, self.execute_steps, self.latency_estimate)
        return latency
