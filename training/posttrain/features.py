"""Cache of the frozen visual modules' outputs, one entry per recorded frame.

Post-training freezes the vision tower + projector and the texture encoder (paper B.1), so their outputs for a
frame never change during a run: ``JalaPolicy.visual_features`` is computed once per frame and every epoch
reuses it (``JalaPolicy.loss_from_features`` gives the same loss as ``compute_loss`` on the images).

One file per dataset: ``<cache_dir>/features-<dataset id>-<model id>.pt`` with ``image_embeds`` (frames, views,
image tokens, hidden) and ``texture`` (frames, tokens, dim) in the model's dtype, indexed by the frame's row in
the dataset. The model id hashes the frozen modules' weights and the camera keys, so a cache never serves
another model or another view order. Files are written atomically. Episodes are decoded whole, ahead, in
DataLoader workers.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from training.files import atomic_write

from .data import DemoChunkDataset

log = logging.getLogger(__name__)


def frozen_modules_id(policy, camera_keys: list[str]) -> str:
    """A hash of what the cached features depend on: the frozen modules' weights, image sizes and views."""
    h = hashlib.sha1()
    h.update(repr(camera_keys).encode())
    h.update(repr((policy.config.perceiver.use_state_tokens, policy.config.perceiver.encoder_image_size)).encode())
    modules = [policy.backbone.model.model.vision_tower, policy.backbone.model.model.multi_modal_projector,
               policy.texture_encoder]
    for module in modules:
        for name, t in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


class _EpisodeFrames(Dataset):
    """Item e: (episode slot e, its frames (T, views, H, W, 3)): decoded in DataLoader workers."""

    def __init__(self, data: DemoChunkDataset, slots: list[int]):
        self.data, self.slots = data, slots

    def __len__(self) -> int:
        return len(self.slots)

    def __getitem__(self, i: int):
        e = self.slots[i]
        frames = np.stack([self.data.episode_frames(e, key) for key in self.data.camera_keys], axis=1)
        return e, torch.from_numpy(np.ascontiguousarray(frames))


class VisualFeatureCache:
    """Frozen visual features of every frame of ``data``'s datasets' episodes."""

    def __init__(self, image_embeds: list[torch.Tensor], texture: list[torch.Tensor | None]):
        self.image_embeds = image_embeds  # per dataset: (frames, views, n_img, hidden)
        self.texture = texture  # per dataset: (frames, tokens, dim) or None

    @classmethod
    def build(cls, policy, datasets: list[DemoChunkDataset], cache_dir: str | Path, *, batch_size: int = 64,
              num_workers: int = 0, progress: bool = False) -> "VisualFeatureCache":
        """Load the cache of every dataset ``datasets`` (train and validation parts) read, computing what is
        missing. All parts must share the underlying LeRobot datasets (as from one ``load_datasets``)."""
        first = datasets[0]
        model_id = frozen_modules_id(policy, first.camera_keys)
        cache_dir = Path(cache_dir)
        image_embeds, texture = [], []
        for d, ds_id in enumerate(first.ids):
            path = cache_dir / f"features-{ds_id}-{model_id}.pt"
            if path.is_file():
                state = torch.load(path, map_location="cpu", weights_only=True)
            else:
                state = cls._compute(policy, datasets, d, batch_size, num_workers, progress)
                atomic_write(path, lambda f, state=state: torch.save(state, f))
                log.info("cached visual features of %s in %s", ds_id, path)
            image_embeds.append(state["image_embeds"])
            texture.append(state.get("texture"))
        return cls(image_embeds, texture)

    @staticmethod
    @torch.no_grad()
    def _compute(policy, datasets: list[DemoChunkDataset], d: int, batch_size: int, num_workers: int,
                 progress: bool) -> dict:
        lerobot = datasets[0].datasets[d]
        n_rows = lerobot.num_frames
        out_img, out_tex, filled = None, None, np.zeros(n_rows, bool)
        jobs = [(part, e) for part in datasets for e in part.episode_slots() if part.episodes[e].dataset == d]
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(jobs), desc=f"visual features ({datasets[0].ids[d]})", unit="ep")
        was_training = policy.training
        policy.eval()
        try:
            for part in datasets:
                slots = [e for e in part.episode_slots() if part.episodes[e].dataset == d]
                if not slots:
                    continue
                loader = DataLoader(_EpisodeFrames(part, slots), batch_size=None, num_workers=num_workers)
                for e, frames in loader:
                    first_row = part._first_row[e]
                    for s in range(0, frames.shape[0], batch_size):
                        img, tex = policy.visual_features(frames[s:s + batch_size])
                        if out_img is None:
                            out_img = torch.zeros((n_rows, *img.shape[1:]), dtype=img.dtype)
                            out_tex = torch.zeros((n_rows, *tex.shape[1:]), dtype=tex.dtype) if tex is not None \
                                else None
                        rows = slice(first_row + s, first_row + s + img.shape[0])
                        out_img[rows] = img.cpu()
                        if out_tex is not None:
                            out_tex[rows] = tex.cpu()
                        filled[rows] = True
                    if bar is not None:
                        bar.update(1)
        finally:
            policy.train(was_training)
            if bar is not None:
                bar.close()
        return {"image_embeds": out_img, "texture": out_tex, "filled": torch.from_numpy(filled)}

    def lookup(self, dataset: torch.Tensor, row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features of a batch of frames given their dataset index and row (``collate``'s ``dataset``/``row``)."""
        img = torch.stack([self.image_embeds[int(d)][int(r)] for d, r in zip(dataset, row)])
        if self.texture[0] is None:
            return img, None
        return img, torch.stack([self.texture[int(d)][int(r)] for d, r in zip(dataset, row)])
