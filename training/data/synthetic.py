"""Small synthetic datasets in the training/data format, for tests and smoke runs.

    python -m training.data.synthetic --out DIR --num-samples N [--video-only-fraction 0.3] [--wild-fraction 0.4]
                                      [--frames 45] [--image-size 64] [--mp4-fraction 0] [--seed 0]

Each sample: smooth random hand trajectories for one or both hands (wrist translation = a few low-frequency
sinusoids around a point ~0.5 m in front of the camera, wrist rotation = a slowly varying axis-angle on a random
base orientation, finger joints flex smoothly about their z axis with a little abduction; all rotations exact),
joints from the FK skeleton of training/data/hand.py, and frames rendering each hand as a coloured blob (palm)
plus five fingertip dots projected through a pinhole camera (lab: plain background; wild: noisy textured one).
The instruction names the dominant wrist motion ("move the right hand left", ...). Some samples are video-only
(no motion file); the last ~10% of each domain are marked split "test".
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .format import SampleRecord, save_motion, write_index
from .hand import (FINGER_SLICE, MOTION_DIM, NUM_FINGER_JOINTS, WRIST_ROT_SLICE, WRIST_TRANS_SLICE, HandSkeleton,
                   axis_angle_to_matrix, matrix_to_rot6d)

HAND_COLORS = {0: (220, 60, 60), 1: (60, 90, 220)}  # left red, right blue


def _smooth(rng: np.random.Generator, t: np.ndarray, dims: int, amp: float, n_freq: int = 3) -> np.ndarray:
    """(T, dims) sum of random low-frequency sinusoids, zero at t = 0 up to a random offset removed."""
    out = np.zeros((len(t), dims))
    for _ in range(n_freq):
        f = rng.uniform(0.1, 0.6, size=dims)
        ph = rng.uniform(0, 2 * np.pi, size=dims)
        a = rng.normal(0, amp / n_freq, size=dims)
        out += a * (np.sin(2 * np.pi * f * t[:, None] + ph) - np.sin(ph))
    return out


def random_hand_motion(rng: np.random.Generator, num_frames: int, fps: float, hand: int) -> np.ndarray:
    """(T, 99) smooth motion of one hand with exact rotations."""
    t = np.arange(num_frames) / fps
    side = -1.0 if hand == 0 else 1.0
    center = np.array([0.12 * side, 0.05, 0.5]) + rng.normal(0, 0.03, 3)
    drift = rng.normal(0, 0.06, 3) * t[:, None]  # a dominant direction of motion
    trans = center + drift + _smooth(rng, t, 3, 0.05)
    base = axis_angle_to_matrix(rng.normal(0, 0.6, 3))
    wrist_r = base @ axis_angle_to_matrix(_smooth(rng, t, 3, 0.5))
    flex = 0.6 + 0.5 * np.tanh(_smooth(rng, t, 1, 1.5))  # shared grasp level
    flex = flex + _smooth(rng, t, NUM_FINGER_JOINTS, 0.3)  # per joint variation
    abd = _smooth(rng, t, NUM_FINGER_JOINTS, 0.15)
    aa = np.zeros((num_frames, NUM_FINGER_JOINTS, 3))
    aa[..., 2] = -np.clip(flex, 0.0, 1.6)  # flex about -z (towards the palm)
    aa[..., 1] = abd
    finger_r = axis_angle_to_matrix(aa)
    m = np.zeros((num_frames, MOTION_DIM))
    m[:, FINGER_SLICE] = matrix_to_rot6d(finger_r).reshape(num_frames, -1)
    m[:, WRIST_ROT_SLICE] = matrix_to_rot6d(wrist_r)
    m[:, WRIST_TRANS_SLICE] = trans
    return m.astype(np.float32)


def project(points: np.ndarray, size: int) -> np.ndarray:
    """(..., 3) camera-frame points [m] -> (..., 2) pixel (u, v) for a square image of ``size`` pixels."""
    f = 0.9 * size
    z = np.clip(points[..., 2], 0.05, None)
    return np.stack([f * points[..., 0] / z + size / 2, f * points[..., 1] / z + size / 2], axis=-1)


def render_frame(rng: np.random.Generator, size: int, joints: np.ndarray, valid: np.ndarray, domain: str,
                 background: np.ndarray) -> np.ndarray:
    """uint8 (size, size, 3): each valid hand as a palm blob + fingertip dots."""
    img = background.copy()
    if domain == "wild":
        img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for h in range(2):
        if not valid[h]:
            continue
        px = project(joints[h], size)
        palm = px[[0, 1, 4, 7, 10]].mean(0)
        r = max(2.0, 0.05 * size * 0.5 / max(joints[h, 0, 2], 0.05))
        img[(xx - palm[0]) ** 2 + (yy - palm[1]) ** 2 <= r * r] = HAND_COLORS[h]
        for tip in px[16:21]:
            img[(xx - tip[0]) ** 2 + (yy - tip[1]) ** 2 <= (0.4 * r) ** 2] = (240, 220, 80)
    return img


def _instruction(motion: np.ndarray, valid: np.ndarray) -> str:
    hands = [h for h in range(2) if valid[h].all()]
    h = hands[-1]
    d = motion[h, -1, WRIST_TRANS_SLICE] - motion[h, 0, WRIST_TRANS_SLICE]
    axis = int(np.argmax(np.abs(d)))
    word = [("right", "left"), ("down", "up"), ("away", "closer")][axis][0 if d[axis] > 0 else 1]
    return f"move the {'left' if h == 0 else 'right'} hand {word}"


def generate(out: str | Path, num_samples: int, *, num_frames: int = 45, fps: float = 15.0, image_size: int = 64,
             video_only_fraction: float = 0.3, wild_fraction: float = 0.4, mp4_fraction: float = 0.0,
             test_fraction: float = 0.1, seed: int = 0) -> list[SampleRecord]:
    """Write a synthetic dataset to ``out`` and return its records."""
    if num_samples <= 0 or num_frames < 15:
        raise ValueError("need num_samples > 0 and num_frames >= 15")
    import imageio.v2 as iio

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    skeletons = (HandSkeleton(hand="left"), HandSkeleton(hand="right"))
    records = []
    n_video_only = int(round(video_only_fraction * num_samples))
    video_only = set(rng.choice(num_samples, n_video_only, replace=False).tolist())
    n_wild = int(round(wild_fraction * num_samples))
    wild = set(rng.choice(num_samples, n_wild, replace=False).tolist())
    n_mp4 = int(round(mp4_fraction * num_samples))
    mp4 = set(rng.choice(num_samples, n_mp4, replace=False).tolist())
    counts = {"lab": 0, "wild": 0}
    totals = {"lab": num_samples - n_wild, "wild": n_wild}
    for i in range(num_samples):
        domain = "wild" if i in wild else "lab"
        counts[domain] += 1
        split = "test" if counts[domain] > totals[domain] * (1 - test_fraction) else "train"
        sid = f"{domain}_{i:05d}"
        d = out / "samples" / sid
        d.mkdir(parents=True, exist_ok=True)
        which = rng.integers(0, 3)  # 0 left only, 1 right only, 2 both
        valid = np.zeros((2, num_frames), dtype=bool)
        valid[0] = which in (0, 2)
        valid[1] = which in (1, 2)
        if which == 2 and rng.random() < 0.3:  # a brief occlusion of the left hand
            s = int(rng.integers(0, num_frames - 5))
            valid[0, s: s + 5] = False
        motion = np.stack([random_hand_motion(rng, num_frames, fps, h) for h in range(2)])
        joints = np.stack([skeletons[h].joints(motion[h]) for h in range(2)]).astype(np.float32)
        if domain == "lab":
            background = np.full((image_size, image_size, 3), rng.integers(90, 160), dtype=np.uint8)
        else:
            background = rng.integers(0, 256, (image_size // 8, image_size // 8, 3), dtype=np.uint8)
            background = np.kron(background, np.ones((8, 8, 1), dtype=np.uint8))[:image_size, :image_size]
        frames = [render_frame(rng, image_size, joints[:, t], valid[:, t], domain, background)
                  for t in range(num_frames)]
        if i in mp4:
            video = d / "video.mp4"
            iio.mimwrite(video, frames, fps=fps, format="ffmpeg", codec="libx264", quality=8, macro_block_size=8)
        else:
            video = d / "frames"
            video.mkdir(exist_ok=True)
            for t, f in enumerate(frames):
                iio.imwrite(video / f"{t:06d}.jpg", f, quality=90)
        has_motion = i not in video_only
        motion_path = None
        if has_motion:
            motion_path = d / "motion.npz"
            save_motion(motion_path, motion, valid, joints)
        instruction = _instruction(motion, valid)
        records.append(SampleRecord(id=sid, video=video, num_frames=num_frames, fps=fps, instruction=instruction,
                                    dataset=f"synthetic-{domain}", domain=domain, has_motion=has_motion,
                                    motion=motion_path, split=split))
    write_index(out, records)
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Generate a small synthetic hand-video dataset (training/data format).")
    ap.add_argument("--out", required=True)
    ap.add_argument("--num-samples", type=int, required=True)
    ap.add_argument("--frames", type=int, default=45, help="frames per sample (>= 15)")
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--video-only-fraction", type=float, default=0.3)
    ap.add_argument("--wild-fraction", type=float, default=0.4)
    ap.add_argument("--mp4-fraction", type=float, default=0.0, help="fraction of samples stored as mp4 video")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    recs = generate(args.out, args.num_samples, num_frames=args.frames, fps=args.fps, image_size=args.image_size,
                    video_only_fraction=args.video_only_fraction, wild_fraction=args.wild_fraction,
                    mp4_fraction=args.mp4_fraction, seed=args.seed)
    n_m = sum(r.has_motion for r in recs)
    print(f"wrote {len(recs)} samples ({n_m} with motion, {len(recs) - n_m} video-only) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
