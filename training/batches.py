"""One rank's micro-batches, epoch after epoch, from a ``ResumableDistributedSampler``, and the data position a
checkpoint stores so that a resumed run takes exactly the batches the interrupted one would have taken next.
Shared by pretraining and post-training."""
from __future__ import annotations

from collections.abc import Callable

from jala_policy.config import ConfigError


class ResumableBatches:
    """``make_loader(sampler)`` builds the DataLoader of an epoch (the sampler already set to the epoch and to the
    position inside it); ``on_epoch(epoch)`` runs before each epoch's loader is built (e.g. a dataset's own
    per-epoch randomness)."""

    def __init__(self, sampler, per_device: int, world_size: int, make_loader: Callable,
                 on_epoch: Callable[[int], None] | None = None):
        self.sampler, self.per_device, self.world_size = sampler, int(per_device), int(world_size)
        self.make_loader, self.on_epoch = make_loader, on_epoch
        self.epoch = 0
        self.micro_in_epoch = 0  # micro-batches this rank has taken from the current epoch
        self._iter = None

    def _start(self):
        self.sampler.set_epoch(self.epoch)
        if self.on_epoch is not None:
            self.on_epoch(self.epoch)
        self.sampler.set_start(self.micro_in_epoch * self.per_device)
        return iter(self.make_loader(self.sampler))

    def next(self):
        if self._iter is None:
            self._iter = self._start()
        try:
            batch = next(self._iter)
        except StopIteration:
            self.epoch += 1
            self.micro_in_epoch = 0
            self._iter = self._start()
            batch = next(self._iter)
        self.micro_in_epoch += 1
        return batch

    def position(self) -> dict:
        """The data position for a checkpoint: the epoch and the samples all ranks have taken from it."""
        return {"epoch": self.epoch, "samples_in_epoch": self.micro_in_epoch * self.per_device * self.world_size}

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint's ``position()``; ConfigError if it does not split over this run's ranks."""
        per_step = self.per_device * self.world_size
        if state["samples_in_epoch"] % per_step:
            raise ConfigError("checkpoint data position does not split over this world size / per-device batch")
        self.epoch = int(state["epoch"])
        self.micro_in_epoch = int(state["samples_in_epoch"]) // per_step
        self._iter = None


def check_global_batch(state: dict, path, global_batch_size: int) -> None:
    """A checkpoint of another global batch would take other samples per step: refused in one line."""
    if state["global_batch_size"] != global_batch_size:
        raise ConfigError(f"checkpoint {path} was trained with global batch {state['global_batch_size']}, this "
                          f"run uses {global_batch_size}: resuming would change the data order")
