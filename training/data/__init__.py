"""Hand-video data: on-disk format (format.py, FORMAT.md), torch Dataset/sampler/loader (dataset.py), hand
motion layout, rotations and FK (hand.py), synthetic generator (synthetic.py)."""
from .dataset import DataConfig, HandVideoDataset, MixedSampler, collate_samples, iter_motion_chunks, make_loader
from .format import DataFormatError, HandMotion, SampleRecord, load_index, load_motion, validate_dataset

__all__ = ["DataConfig", "DataFormatError", "HandMotion", "HandVideoDataset", "MixedSampler", "SampleRecord",
           "collate_samples", "iter_motion_chunks", "load_index", "load_motion", "make_loader", "validate_dataset"]
