"""The policy side of the runtime: ``PolicyRunner`` (one step: is a chunk due, is there a fresh observation,
compute it) and ``InferenceLoop`` (the thread the ROS policy node runs around it). The simulated evaluation calls
``PolicyRunner.poll`` itself, on the world's clock, so both run the same scheduling and staleness rules.

A policy is anything with ``predict(images, instruction, proprio, timestamp=, seed=) -> TimedChunk``
(``JalaPolicy``; the scripted expert of the simulated world through ``evaluation.policies``).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from .chunk import TimedChunk
from .observation import Observation, ObservationAssembler
from .scheduler import ChunkScheduler


class ChunkPolicy(Protocol):
    def predict(self, images, instruction: str, proprio, timestamp: float | None = None,
                seed: int | None = None) -> TimedChunk: ...


def run_policy(policy: ChunkPolicy, obs: Observation, seed: int | None = None) -> TimedChunk:
    """One chunk from one observation (a single view is passed as one image)."""
    images = obs.images if len(obs.images) > 1 else obs.images[0]
    return policy.predict(images, obs.instruction, obs.proprio, timestamp=obs.stamp, seed=seed)


class PolicyRunner:
    """Pipelined inference for one policy: ``poll(now)`` computes a chunk when one is due and a fresh observation
    is there; ``chunk_out(chunk, at)`` records when it went out (for the schedule). ``seed`` >= 0 makes sampling
    reproducible (seed + chunk index)."""

    def __init__(self, policy: ChunkPolicy, scheduler: ChunkScheduler, observations: ObservationAssembler,
                 seed: int | None = None):
        self.policy = policy
        self.scheduler = scheduler
        self.observations = observations
        self.seed = seed
        self.chunks_out = 0

    def poll(self, now: float, instruction: str) -> tuple[TimedChunk | None, str]:
        """(chunk, "") or (None, why none: "not due", "same frame", a staleness reason). Exceptions of the policy
        propagate (the caller reports them; no chunk goes out)."""
        if not self.scheduler.due(now):
            return None, "not due"
        obs, reason = self.observations.assemble(now, instruction)
        if obs is None:
            return None, reason
        if not self.scheduler.is_new_frame(obs.stamp):  # never compute twice from the same frame
            return None, "same frame"
        self.scheduler.computing(obs.stamp)
        seed = None if self.seed is None else self.seed + self.chunks_out
        return run_policy(self.policy, obs, seed), ""

    def chunk_out(self, chunk: TimedChunk, at: float) -> float:
        """The chunk went out (published / handed to the devices) at ``at``; returns its latency."""
        self.chunks_out += 1
        return self.scheduler.chunk_out(chunk.stamp, at)


class InferenceLoop:
    """The policy node's inference thread. While ``running()``: wait until a chunk is due, poll the runner, hand
    the chunk to ``publish(chunk) -> bool`` (False: dropped, e.g. stopped or held meanwhile), record it.
    ``wake()`` is called on every new frame. ``log(level, message)`` reports waiting reasons (once per change)
    and inference errors (then ``on_error(message)``)."""

    def __init__(self, runner: PolicyRunner, *, clock: Callable[[], float], running: Callable[[], bool],
                 instruction: Callable[[], str], publish: Callable[[TimedChunk], bool],
                 log: Callable[[str, str], None], on_error: Callable[[str], None] | None = None,
                 on_published: Callable[[TimedChunk, float, float], None] | None = None):
        self.runner = runner
        self.clock = clock
        self.running = running
        self.instruction = instruction
        self.publish = publish
        self.log = log
        self.on_error = on_error or (lambda message: None)
        self.on_published = on_published or (lambda chunk, latency, infer_s: None)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _idle(self, timeout: float) -> None:
        self._wake.wait(timeout=timeout)
        self._wake.clear()

    def _run(self) -> None:
        import sys
        import traceback

        while not self._stop.is_set():
            try:
                self._serve()
            except Exception:  # noqa: BLE001 - a bug must not end the thread silently with the node "running"
                print(f"[policy-inference] unexpected error, carrying on:\n{traceback.format_exc()}", file=sys.stderr,
                      flush=True)
                self.on_error("unexpected error in the inference loop (see the log)")
                time.sleep(0.1)

    def _serve(self) -> None:
        last_reason = ""
        sched = self.runner.scheduler
        while not self._stop.is_set():
            if not self.running():
                self._idle(0.05)
                continue
            now = self.clock()
            if not sched.due(now):
                time.sleep(min(sched.wait_s(now), 0.05))
                continue
            t0 = time.perf_counter()
            try:
                chunk, reason = self.runner.poll(now, self.instruction())
            except Exception as exc:  # noqa: BLE001 - no chunk goes out; the supervisor sees the gap
                message = f"{type(exc).__name__}: {exc}"
                self.log("error", f"inference failed: {message}")
                self.on_error(message)
                time.sleep(0.1)
                continue
            if chunk is None:
                if reason != last_reason and reason != "same frame":
                    self.log("warn", reason)
                last_reason = reason
                self._idle(0.01)
                continue
            last_reason = ""
            infer_s = time.perf_counter() - t0
            if not self.publish(chunk):
                continue
            latency = self.runner.chunk_out(chunk, self.clock())
            self.on_published(chunk, latency, infer_s)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
