"""On-disk format of UniHand-style hand-video samples (also in training/data/FORMAT.md).

A dataset is a directory::

    DATASET/
      index.jsonl                 one JSON object per line, one line per sample
      samples/<id>/frames/        the video as numbered image files (000000.jpg, 000001.jpg, ...; JPEG or PNG)
      samples/<id>/video.mp4      ... or as one video file readable by imageio (mp4/mkv/avi/webm/mov)
      samples/<id>/motion.npz     per-frame hand motion (only for samples with has_motion = true)

The paths inside the dataset are free: the index names them, relative to DATASET/.

index.jsonl fields (one sample per line)
    id           str, unique in the dataset
    video        str, relative path of the frames directory or of the video file
    num_frames   int > 0, frames in the video (= motion frames when has_motion)
    fps          float > 0, frame rate of video and motion
    instruction  str, the language instruction (may be empty for video-only samples)
    dataset      str, source dataset name (e.g. "dexycb", "oakink2", "ego4d")
    domain       "lab" | "wild"  (lab-annotated vs in-the-wild); metrics are reported per domain
    has_motion   bool; false for video-only samples, which have no motion file
    motion       str, relative path of the motion npz; required when has_motion, absent/null otherwise
    split        optional "train" | "val" | "test" (default "train")

motion.npz arrays (T = num_frames; hands are "left" and "right")
    left_motion, right_motion   float32 (T, 99): per frame [15 finger joints rot6d | wrist rot6d | wrist
                                translation in metres], see training/data/hand.py for the layout/conventions
    left_valid,  right_valid    bool (T,): the hand is annotated in that frame. A missing hand is all False;
                                its motion values are ignored (write zeros or the identity).
    left_joints, right_joints   optional float32 (T, 21, 3): 3-D joints in metres (e.g. MANO joints) for
                                metrics, in the skeleton order of training/data/hand.py

Rules checked when loading (a broken sample raises :class:`DataFormatError` naming the sample and file):
array shapes and dtypes as above, T == num_frames, finite values and valid rot6d (two non-parallel
non-zero rows) in every valid frame, at least one valid frame when has_motion, frame files present and the
frame count matching num_frames, images decodable as HxWx3 (grey/RGBA are converted) uint8.

Chunking (what the loader yields): chunks of C = 15 frames start at frames 0, 15, 30, ...; a sample has
``num_frames // 15`` chunks (the tail that does not fill a chunk is dropped). Chunk i's boundary frames are
frame 15*i and frame min(15*(i+1), num_frames-1), so a sample with n chunks gives n+1 boundary frames.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .hand import MOTION_DIM, NUM_JOINTS, rot6d_is_valid

INDEX_FILE = "index.jsonl"
DOMAINS = ("lab", "wild")
SPLITS = ("train", "val", "test")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".webm", ".mov")
HAND_KEYS = ("left", "right")


class DataFormatError(ValueError):
    """A dataset, index line or sample file does not follow the format."""


@dataclass
class SampleRecord:
    """One line of index.jsonl, with paths resolved against the dataset root."""

    id: str
    video: Path
    num_frames: int
    fps: float
    instruction: str
    dataset: str
    domain: str
    has_motion: bool
    motion: Path | None = None
    split: str = "train"
    extra: dict = field(default_factory=dict)

    @property
    def video_is_frames_dir(self) -> bool:
        return self.video.suffix.lower() not in VIDEO_EXTS

    def to_json(self, root: str | os.PathLike) -> dict:
        root = Path(root)
        d = {"id": self.id, "video": os.path.relpath(self.video, root), "num_frames": self.num_frames,
             "fps": self.fps, "instruction": self.instruction, "dataset": self.dataset, "domain": self.domain,
             "has_motion": self.has_motion, "split": self.split}
        if self.motion is not None:
            d["motion"] = os.path.relpath(self.motion, root)
        d.update(self.extra)
        return d


def _record_from_json(obj, root: Path, where: str) -> SampleRecord:
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    required = ("id", "video", "num_frames", "fps", "instruction", "dataset", "domain", "has_motion")
    missing = [k for k in required if k not in obj]
    if missing:
        raise DataFormatError(f"{where}: missing field(s) {', '.join(missing)}")
    sid = obj["id"]
    if not isinstance(sid, str) or not sid:
        raise DataFormatError(f"{where}: id must be a non-empty string")
    where = f"{where} (sample {sid!r})"
    if obj["domain"] not in DOMAINS:
        raise DataFormatError(f"{where}: domain must be one of {DOMAINS}, got {obj['domain']!r}")
    split = obj.get("split", "train")
    if split not in SPLITS:
        raise DataFormatError(f"{where}: split must be one of {SPLITS}, got {split!r}")
    if not isinstance(obj["has_motion"], bool):
        raise DataFormatError(f"{where}: has_motion must be true or false")
    try:
        num_frames, fps = int(obj["num_frames"]), float(obj["fps"])
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{where}: num_frames/fps must be numbers") from exc
    if num_frames <= 0 or not fps > 0:
        raise DataFormatError(f"{where}: num_frames and fps must be positive")
    if not isinstance(obj["instruction"], str):
        raise DataFormatError(f"{where}: instruction must be a string")
    motion = obj.get("motion")
    if obj["has_motion"] and not motion:
        raise DataFormatError(f"{where}: has_motion is true but no motion file is given")
    if not obj["has_motion"] and motion:
        raise DataFormatError(f"{where}: has_motion is false but a motion file is given")
    known = set(required) | {"motion", "split"}
    return SampleRecord(id=sid, video=root / obj["video"], num_frames=num_frames, fps=fps,
                        instruction=obj["instruction"], dataset=str(obj["dataset"]), domain=obj["domain"],
                        has_motion=obj["has_motion"], motion=(root / motion) if motion else None, split=split,
                        extra={k: v for k, v in obj.items() if k not in known})


def load_index(root: str | os.PathLike, *, check_files: bool = True) -> list[SampleRecord]:
    """Parse DATASET/index.jsonl. With ``check_files`` every referenced video/motion path must exist."""
    root = Path(root).expanduser()
    index = root / INDEX_FILE
    if not root.is_dir():
        raise DataFormatError(f"dataset directory {root} does not exist")
    if not index.is_file():
        raise DataFormatError(f"{root} has no {INDEX_FILE}: not a dataset in the training/data format")
    records, seen = [], set()
    for lineno, line in enumerate(index.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{index}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{where}: invalid JSON ({exc.msg})") from exc
        rec = _record_from_json(obj, root, where)
        if rec.id in seen:
            raise DataFormatError(f"{where}: duplicate sample id {rec.id!r}")
        seen.add(rec.id)
        if check_files:
            if not rec.video.exists():
                raise DataFormatError(f"{where} (sample {rec.id!r}): video {rec.video} does not exist")
            if rec.motion is not None and not rec.motion.is_file():
                raise DataFormatError(f"{where} (sample {rec.id!r}): motion file {rec.motion} does not exist")
        records.append(rec)
    if not records:
        raise DataFormatError(f"{index} lists no samples")
    return records


def write_index(root: str | os.PathLike, records: list[SampleRecord]) -> Path:
    root = Path(root)
    path = root / INDEX_FILE
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r.to_json(root)) + "\n")
    return path


# ------------------------------------------------------------------------------------------------ motion
@dataclass
class HandMotion:
    """Motion of one sample: arrays indexed [hand] with hand 0 = left, 1 = right."""

    motion: np.ndarray  # float32 (2, T, 99)
    valid: np.ndarray  # bool (2, T)
    joints: np.ndarray | None = None  # float32 (2, T, 21, 3) when both hands have joints


def load_motion(rec: SampleRecord) -> HandMotion:
    """Read and validate a sample's motion npz."""
    if rec.motion is None:
        raise DataFormatError(f"sample {rec.id!r} is video-only (has_motion false): it has no motion")
    where = f"sample {rec.id!r} ({rec.motion})"
    try:
        with np.load(rec.motion, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError as exc:
        raise DataFormatError(f"{where}: motion file does not exist") from exc
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError ...
        raise DataFormatError(f"{where}: cannot read the motion npz ({type(exc).__name__}: {exc})") from exc
    t = rec.num_frames
    motions, valids, joints = [], [], []
    for hand in HAND_KEYS:
        for key in (f"{hand}_motion", f"{hand}_valid"):
            if key not in arrays:
                raise DataFormatError(f"{where}: missing array {key!r} (has {sorted(arrays)})")
        m, v = arrays[f"{hand}_motion"], arrays[f"{hand}_valid"]
        if m.shape != (t, MOTION_DIM):
            raise DataFormatError(f"{where}: {hand}_motion must be ({t}, {MOTION_DIM}) for num_frames={t}, "
                                  f"got {m.shape}")
        if v.shape != (t,) or v.dtype != np.bool_:
            raise DataFormatError(f"{where}: {hand}_valid must be bool ({t},), got {v.dtype} {v.shape}")
        if not np.issubdtype(m.dtype, np.floating):
            raise DataFormatError(f"{where}: {hand}_motion must be floating point, got {m.dtype}")
        mv = m[v]
        if not np.isfinite(mv).all():
            bad = np.flatnonzero(v)[~np.isfinite(mv).all(-1)]
            raise DataFormatError(f"{where}: {hand}_motion has NaN/inf in valid frames {bad[:5].tolist()}")
        rot_ok = rot6d_is_valid(mv[:, :96].reshape(len(mv), 16, 6)).all(-1)
        if not rot_ok.all():
            bad = np.flatnonzero(v)[~rot_ok]
            raise DataFormatError(f"{where}: {hand}_motion has degenerate rot6d in valid frames {bad[:5].tolist()}")
        motions.append(np.where(v[:, None], m, 0).astype(np.float32))
        valids.append(v)
        jk = f"{hand}_joints"
        if jk in arrays:
            j = arrays[jk]
            if j.shape != (t, NUM_JOINTS, 3):
                raise DataFormatError(f"{where}: {jk} must be ({t}, {NUM_JOINTS}, 3), got {j.shape}")
            if not np.isfinite(j[v]).all():
                raise DataFormatError(f"{where}: {jk} has NaN/inf in valid frames")
            joints.append(j.astype(np.float32))
    if not any(v.any() for v in valids):
        raise DataFormatError(f"{where}: has_motion is true but no frame of either hand is valid")
    return HandMotion(np.stack(motions), np.stack(valids), np.stack(joints) if len(joints) == 2 else None)


def save_motion(path: str | os.PathLike, motion: np.ndarray, valid: np.ndarray,
                joints: np.ndarray | None = None) -> None:
    """Write a motion npz from (2, T, 99) motion, (2, T) valid and optional (2, T, 21, 3) joints."""
    motion, valid = np.asarray(motion, np.float32), np.asarray(valid, bool)
    if motion.ndim != 3 or motion.shape[0] != 2 or motion.shape[2] != MOTION_DIM or valid.shape != motion.shape[:2]:
        raise ValueError(f"motion must be (2, T, {MOTION_DIM}) and valid (2, T); got {motion.shape}, {valid.shape}")
    arrays = {"left_motion": motion[0], "right_motion": motion[1], "left_valid": valid[0], "right_valid": valid[1]}
    if joints is not None:
        joints = np.asarray(joints, np.float32)
        arrays.update(left_joints=joints[0], right_joints=joints[1])
    np.savez_compressed(path, **arrays)


# ------------------------------------------------------------------------------------------------ frames
class FrameSource:
    """Random access to a sample's frames (a frames directory or a video file), uint8 HxWx3 RGB."""

    def __init__(self, rec: SampleRecord):
        self.rec = rec
        self._reader = None
        if rec.video_is_frames_dir:
            if not rec.video.is_dir():
                raise DataFormatError(f"sample {rec.id!r}: {rec.video} is neither a frames directory nor a video "
                                      f"file ({', '.join(VIDEO_EXTS)})")
            self.files = sorted(p for p in rec.video.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if len(self.files) != rec.num_frames:
                raise DataFormatError(f"sample {rec.id!r}: {rec.video} holds {len(self.files)} image frames but "
                                      f"num_frames is {rec.num_frames}")
        elif not rec.video.is_file():
            raise DataFormatError(f"sample {rec.id!r}: video file {rec.video} does not exist")

    def _to_rgb(self, img: np.ndarray, index: int) -> np.ndarray:
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        if img.ndim != 3 or img.shape[2] not in (3, 4):
            raise DataFormatError(f"sample {self.rec.id!r}: frame {index} has shape {img.shape}, not HxWx3")
        if img.dtype != np.uint8:
            raise DataFormatError(f"sample {self.rec.id!r}: frame {index} is {img.dtype}, expected uint8")
        return np.ascontiguousarray(img[..., :3])

    def read(self, index: int) -> np.ndarray:
        import imageio.v2 as iio

        if not 0 <= index < self.rec.num_frames:
            raise IndexError(f"frame {index} out of range for sample {self.rec.id!r} ({self.rec.num_frames} frames)")
        try:
            if self.rec.video_is_frames_dir:
                return self._to_rgb(iio.imread(self.files[index]), index)
            if self._reader is None:
                self._reader = iio.get_reader(self.rec.video, format="ffmpeg")
            return self._to_rgb(self._reader.get_data(index), index)
        except DataFormatError:
            raise
        except Exception as exc:
            raise DataFormatError(f"sample {self.rec.id!r}: cannot decode frame {index} of {self.rec.video} "
                                  f"({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def chunk_boundaries(num_frames: int, chunk_frames: int = 15) -> list[int]:
    """Boundary frame indices [0, C, 2C, ..., min(nC, T-1)] of the n = T // C chunks (empty if n == 0)."""
    n = num_frames // chunk_frames
    if n == 0:
        return []
    return [i * chunk_frames for i in range(n)] + [min(n * chunk_frames, num_frames - 1)]


def validate_dataset(root: str | os.PathLike, *, read_frames: bool = False) -> list[SampleRecord]:
    """Check the whole dataset (index, every motion file; with ``read_frames`` also decode every boundary
    frame). Raises DataFormatError at the first broken sample; returns the records when all are fine."""
    records = load_index(root)
    for rec in records:
        if rec.has_motion:
            load_motion(rec)
        src = FrameSource(rec)
        if read_frames:
            for i in chunk_boundaries(rec.num_frames) or [0]:
                src.read(i)
        src.close()
    return records
