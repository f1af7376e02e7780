"""Hand retargeting (teleop.retarget) and the generated Inspire URDF (teleop.inspire_urdf).

The human hands here come from a small synthetic right-hand model (``synthetic_hand``): MANO-order keypoints
from finger curls and a thumb opposition / flexion. ``tests/teleop/data/open_fist_open.npz`` is a recorded
sequence of it (open -> fist -> open at 30 Hz, 1 mm noise, an arbitrary source wrist-frame orientation); regenerate
it with ``python -m tests.teleop.test_retarget``.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("dex_retargeting")
pin = pytest.importorskip("pinocchio")

from embodiment import HAND_DOF, HAND_DOF_NAMES  # noqa: E402
from hardware.sim.scene import (  # noqa: E402
    DISTAL_COUPLING, FINGERS, HAND_ACTUATED_JOINTS, HAND_CLOSED_ANGLE, THUMB_COUPLING,
)
from teleop import inspire_urdf  # noqa: E402
from teleop.retarget import (  # noqa: E402
    HandRetargeter, RetargetConfig, joints_to_units, keypoints_in_hand_frame, units_to_joints,
)

DATA = Path(__file__).resolve().parent / "data" / "open_fist_open.npz"
FINGER_DOFS = [HAND_DOF_NAMES.index(f) for f in ("pinky", "ring", "middle", "index")]
THUMB_BEND = HAND_DOF_NAMES.index("thumb_bend")
THUMB_ROT = HAND_DOF_NAMES.index("thumb_rotation")


# ------------------------------------------------------------------------------------ synthetic human hand
# hand frame: x index -> pinky, y palm normal, z wrist -> fingers (the robot's hand_base convention); metres
_MCP = {"index": (-0.022, 0.0, 0.092), "middle": (-0.002, 0.0, 0.095), "ring": (0.017, 0.0, 0.089),
        "pinky": (0.033, 0.0, 0.080)}
_PHALANX = {"index": (0.040, 0.024, 0.020), "middle": (0.045, 0.027, 0.021), "ring": (0.042, 0.026, 0.021),
            "pinky": (0.033, 0.020, 0.019)}
_CURL_GAIN = (1.5, 1.7, 0.6)  # MCP, PIP, DIP flexion at curl 1 [rad]
_THUMB_CMC = np.array([-0.018, 0.012, 0.025])
_THUMB_OPEN = np.array([-0.94, 0.10, 0.34]) / np.linalg.norm([-0.94, 0.10, 0.34])  # spread in the palm plane
_THUMB_FLEX_TOWARD = np.array([0.5, 0.45, 0.7])  # across the palm, towards the fingers
_THUMB_LEN = (0.046, 0.032, 0.027)
_THUMB_GAIN = (0.3, 0.9, 0.8)


def _rot(axis, angle) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def synthetic_hand(curl=(0.0, 0.0, 0.0, 0.0), thumb_opp: float = 0.0, thumb_flex: float = 0.0) -> np.ndarray:
    """(21, 3) right-hand keypoints, MANO order, in the hand frame. ``curl``: index, middle, ring, pinky in 0..1
    (1 = fist); ``thumb_opp``: opposition [rad] about the wrist's -z; ``thumb_flex``: 0..1."""
    kp = np.zeros((21, 3))
    for i, (name, c) in enumerate(zip(("index", "middle", "ring", "pinky"), curl)):
        p, th = np.array(_MCP[name]), 0.0
        kp[5 + 4 * i] = p
        for k, (length, gain) in enumerate(zip(_PHALANX[name], _CURL_GAIN)):
            th += c * gain
            p = p + length * np.array([0.0, np.sin(th), np.cos(th)])
            kp[6 + 4 * i + k] = p
    u, p = _rot([0, 0, -1], thumb_opp) @ _THUMB_OPEN, _THUMB_CMC.copy()
    kp[1] = p
    for k, (length, gain) in enumerate(zip(_THUMB_LEN, _THUMB_GAIN)):
        u = _rot(np.cross(u, _THUMB_FLEX_TOWARD), thumb_flex * gain) @ u
        p = p + length * u
        kp[2 + k] = p
    return kp


def open_hand() -> np.ndarray:
    return synthetic_hand()


def fist() -> np.ndarray:
    return synthetic_hand((1.0, 1.0, 1.0, 1.0), thumb_opp=0.5, thumb_flex=1.0)


def _random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def make_recording(seed: int = 0, rate_hz: float = 30.0) -> dict:
    """open (0.5 s) -> fist (1 s, smoothstep) -> hold (0.5 s) -> open (1 s) -> hold (0.5 s), with 1 mm noise, in an
    arbitrary (fixed) source wrist frame, float32."""
    rng = np.random.default_rng(seed)
    n_hold, n_move = int(0.5 * rate_hz), int(1.0 * rate_hz)
    ramp = np.linspace(0.0, 1.0, n_move)
    ramp = ramp * ramp * (3 - 2 * ramp)
    s = np.concatenate([np.zeros(n_hold), ramp, np.ones(n_hold), ramp[::-1], np.zeros(n_hold)])
    rot = _random_rotation(rng)
    frames = []
    for a in s:
        kp = synthetic_hand((a, a, a, a), thumb_opp=0.5 * a, thumb_flex=a)
        kp = kp + rng.normal(scale=0.001, size=kp.shape)
        frames.append(kp @ rot.T)
    return {"keypoints": np.asarray(frames, np.float32), "stamps": (np.arange(len(s)) / rate_hz),
            "closure": s.astype(np.float32)}


def _settle(rt: HandRetargeter, kp, n: int = 8) -> np.ndarray:
    """Retarget the same pose ``n`` times (a held pose streamed at the source's rate)."""
    out = None
    for _ in range(n):
        out = rt.retarget(kp)
    return out


@pytest.fixture(scope="module", params=["vector", "dexpilot"])
def retargeter(request):
    return HandRetargeter(RetargetConfig(optimizer=request.param))


# ------------------------------------------------------------------------------------------------ URDF
def test_urdf_regeneration_is_identical():
    """The committed URDF is exactly what the generator makes from the current hand model (no drift)."""
    assert inspire_urdf.URDF_PATH.is_file(), "run python -m teleop.inspire_urdf"
    assert inspire_urdf.URDF_PATH.read_text(encoding="utf-8") == inspire_urdf.generate_urdf(), (
        "teleop/assets/inspire_rh56_right.urdf is out of date: run python -m teleop.inspire_urdf")
    assert inspire_urdf.main(["--check"]) == 0


def test_urdf_joints_ranges_and_mimics():
    root = ET.parse(inspire_urdf.URDF_PATH).getroot()
    revolute = {j.get("name"): j for j in root.findall("joint") if j.get("type") == "revolute"}
    mimic = {n: j.find("mimic") for n, j in revolute.items() if j.find("mimic") is not None}
    actuated = [n for n in revolute if n not in mimic]
    assert sorted(actuated) == sorted(HAND_ACTUATED_JOINTS)
    for name, closed in zip(HAND_ACTUATED_JOINTS, HAND_CLOSED_ANGLE):
        lim = revolute[name].find("limit")
        assert float(lim.get("lower")) == 0.0 and float(lim.get("upper")) == pytest.approx(closed)
    expected = {f"{f}_dist": (f"{f}_prox", DISTAL_COUPLING) for f in FINGERS}
    expected["thumb_bend2"] = ("thumb_bend1", THUMB_COUPLING[0])
    expected["thumb_bend3"] = ("thumb_bend1", THUMB_COUPLING[1])
    assert {n: (m.get("joint"), float(m.get("multiplier"))) for n, m in mimic.items()} == expected
    assert all(float(m.get("offset")) == 0.0 for m in mimic.values())
    links = {link.get("name") for link in root.findall("link")}
    assert {"hand_base", "thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip"} <= links


def test_urdf_loads_in_pinocchio():
    path = str(inspire_urdf.URDF_PATH)
    model = pin.buildModelFromUrdf(path)  # how dex-retargeting loads it: mimic joints as plain joints
    assert model.nq == 12 and set(HAND_ACTUATED_JOINTS) <= set(model.names)
    try:
        coupled = pin.buildModelFromUrdf(path, mimic=True)
    except TypeError:  # pinocchio without mimic support
        pytest.skip("this pinocchio cannot build mimic joints")
    assert coupled.nq == HAND_DOF  # six actuated DoFs, the rest mimic them


def test_urdf_kinematics_match_the_simulated_hand():
    """Fingertip positions of the URDF (pinocchio, mimic joints applied) equal the MJCF hand's (MuJoCo) for the
    same actuated angles: the URDF is the simulated hand."""
    mujoco = pytest.importorskip("mujoco")
    from hardware.sim.scene import _hand_xml

    mj = mujoco.MjModel.from_xml_string(
        '<mujoco><default><default class="inspire"/></default><worldbody>'
        f'{_hand_xml()}</worldbody></mujoco>')
    md = mujoco.MjData(mj)
    model = pin.buildModelFromUrdf(str(inspire_urdf.URDF_PATH))
    data = model.createData()
    coupled = {f"{f}_dist": (f"{f}_prox", DISTAL_COUPLING) for f in FINGERS}
    coupled.update(thumb_bend2=("thumb_bend1", THUMB_COUPLING[0]), thumb_bend3=("thumb_bend1", THUMB_COUPLING[1]))
    rng = np.random.default_rng(3)
    base = np.array([0.0, 0.0, 0.107])  # hand_base's position in the (world-fixed) MJCF model
    for _ in range(5):
        act = dict(zip(HAND_ACTUATED_JOINTS, rng.uniform(0, 1, HAND_DOF) * HAND_CLOSED_ANGLE))
        angles = dict(act, **{m: act[src] * c for m, (src, c) in coupled.items()})
        q = np.zeros(model.nq)
        for name, a in angles.items():
            q[model.joints[model.getJointId(name)].idx_q] = a
            md.qpos[mj.joint(name).qposadr[0]] = a
        mujoco.mj_kinematics(mj, md)
        pin.forwardKinematics(model, data, q)
        pin.updateFramePlacements(model, data)
        for tip in ("thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip"):
            urdf_pos = data.oMf[model.getFrameId(tip)].translation
            np.testing.assert_allclose(urdf_pos, md.site(tip).xpos - base, atol=1e-9)


# --------------------------------------------------------------------------------------------- mapping
def test_unit_mapping_is_the_simulated_hands():
    from hardware.sim.devices import SimHand

    rng = np.random.default_rng(0)
    q = rng.uniform(-0.1, 1.1, size=(20, HAND_DOF)) * HAND_CLOSED_ANGLE
    hand = object.__new__(SimHand)  # only its joint -> unit rule, no world
    for row in q:
        hand._w = SimpleNamespace(data=SimpleNamespace(qpos=row), hand_qadr=np.arange(HAND_DOF))
        np.testing.assert_allclose(joints_to_units(row), hand._angles())
    np.testing.assert_allclose(joints_to_units(np.zeros(HAND_DOF)), 1000.0)
    np.testing.assert_allclose(joints_to_units(HAND_CLOSED_ANGLE), 0.0)
    u = rng.uniform(0, 1000, size=HAND_DOF)
    np.testing.assert_allclose(joints_to_units(units_to_joints(u)), u)


# ----------------------------------------------------------------------------------------- retargeting
def test_open_hand_is_open(retargeter):
    retargeter.reset()
    out = _settle(retargeter, open_hand())
    assert out.shape == (HAND_DOF,) and out.dtype == np.float64
    assert np.all(out[FINGER_DOFS] > 900), out
    assert out[THUMB_BEND] > 800 and out[THUMB_ROT] > 800, out


def test_fist_closes_fingers_and_bends_thumb(retargeter):
    retargeter.reset()
    _settle(retargeter, open_hand(), 3)
    out = _settle(retargeter, fist())
    assert np.all(out[FINGER_DOFS] < 100), out
    assert out[THUMB_BEND] < 450, out
    assert out[THUMB_ROT] < 300, out


def test_half_curl_is_in_between(retargeter):
    retargeter.reset()
    out = _settle(retargeter, synthetic_hand((0.5, 0.5, 0.5, 0.5), thumb_opp=0.25, thumb_flex=0.5))
    assert np.all((out[FINGER_DOFS] > 100) & (out[FINGER_DOFS] < 800)), out


def test_source_frame_orientation_does_not_matter():
    """The palm frame is estimated from the keypoints: any rotation / translation of the source frame gives the
    same angles."""
    rng = np.random.default_rng(1)
    kp = synthetic_hand((0.3, 0.6, 0.2, 0.8), thumb_opp=0.4, thumb_flex=0.5)
    ref = _settle(HandRetargeter(RetargetConfig(low_pass_alpha=None)), kp, 3)
    for _ in range(3):
        moved = kp @ _random_rotation(rng).T + rng.uniform(-1, 1, 3)
        np.testing.assert_allclose(keypoints_in_hand_frame(moved), keypoints_in_hand_frame(kp), atol=1e-9)
        out = _settle(HandRetargeter(RetargetConfig(low_pass_alpha=None)), moved, 3)
        np.testing.assert_allclose(out, ref, atol=1.0)


def test_left_hand_is_mirrored_onto_the_right_hand():
    kp = synthetic_hand((0.2, 0.9, 0.5, 0.1), thumb_opp=0.6, thumb_flex=0.7)
    right = _settle(HandRetargeter(RetargetConfig(low_pass_alpha=None)), kp, 3)
    left_kp = kp * np.array([-1.0, 1.0, 1.0]) @ _random_rotation(np.random.default_rng(4)).T  # a left hand
    left = _settle(HandRetargeter(RetargetConfig(low_pass_alpha=None, human_hand="left")), left_kp, 3)
    np.testing.assert_allclose(left, right, atol=1.0)
    as_right = _settle(HandRetargeter(RetargetConfig(low_pass_alpha=None)), left_kp, 3)
    assert not np.allclose(as_right, right, atol=50.0)  # unmirrored, a left hand does not retarget


def test_outputs_stay_in_range_for_perturbed_and_random_keypoints(retargeter):
    rng = np.random.default_rng(2)
    retargeter.reset()
    for i in range(40):
        kp = synthetic_hand(rng.uniform(-0.3, 1.3, 4), rng.uniform(-0.5, 1.5), rng.uniform(-0.5, 1.5))
        kp = kp + rng.normal(scale=0.02, size=kp.shape)  # 2 cm noise
        if i % 4 == 3:
            kp = rng.uniform(-0.2, 0.2, size=(21, 3))  # garbage tracking
        out = retargeter.retarget(kp @ _random_rotation(rng).T)
        assert out.shape == (HAND_DOF,)
        assert np.all(np.isfinite(out)) and np.all(out >= 0.0) and np.all(out <= 1000.0), out


@pytest.mark.parametrize("bad", [
    np.zeros((20, 3)), np.zeros((21, 2)), np.zeros(63), np.zeros((2, 21, 3)), "not keypoints", None,
])
def test_wrong_shape_raises(bad):
    rt = HandRetargeter()
    with pytest.raises(ValueError, match="keypoints"):
        rt.retarget(bad)


def test_nan_inf_and_degenerate_raise_and_keep_state():
    rt = HandRetargeter()
    before = _settle(rt, fist(), 3)
    for value in (np.nan, np.inf):
        kp = open_hand()
        kp[8, 1] = value
        with pytest.raises(ValueError, match="NaN or inf"):
            rt.retarget(kp)
    with pytest.raises(ValueError, match="degenerate"):
        rt.retarget(np.zeros((21, 3)))
    np.testing.assert_allclose(rt.last_units, before)
    np.testing.assert_allclose(rt.retarget(fist()), before, atol=20.0)  # still where it was


def test_reset_forgets_filter_and_warm_start():
    fresh = HandRetargeter().retarget(open_hand())
    rt = HandRetargeter()
    _settle(rt, fist())
    rt.reset()
    assert rt.last_units is None
    np.testing.assert_allclose(rt.retarget(open_hand()), fresh, atol=1e-3)


def test_low_pass_filter_smooths_a_step():
    raw = HandRetargeter(RetargetConfig(low_pass_alpha=None))
    lp = HandRetargeter(RetargetConfig(low_pass_alpha=0.2))
    _settle(raw, open_hand(), 3)
    _settle(lp, open_hand(), 3)
    step_raw, step_lp = raw.retarget(fist()), lp.retarget(fist())
    assert np.all(step_raw[FINGER_DOFS] < 100)
    assert np.all(step_lp[FINGER_DOFS] > 700)  # one filtered step moves a fifth of the way


def test_config_validation():
    for kwargs in ({"optimizer": "position"}, {"scaling_factor": 0.0}, {"low_pass_alpha": 0.0},
                   {"keypoint_frame": "camera"}, {"human_hand": "both"}):
        with pytest.raises(ValueError):
            RetargetConfig(**kwargs)
    with pytest.raises(ValueError):
        HandRetargeter(RetargetConfig(urdf_path="/nonexistent/hand.urdf"))


def test_recorded_sequence_retargets_smoothly(retargeter):
    rec = np.load(DATA)
    kps, closure = rec["keypoints"], rec["closure"]
    assert kps.shape[1:] == (21, 3) and len(kps) == len(closure)
    retargeter.reset()
    out = np.array([retargeter.retarget(kp) for kp in kps])
    assert np.all((out >= 0) & (out <= 1000))
    jumps = np.abs(np.diff(out, axis=0)).max(axis=0)
    assert np.all(jumps < 150.0), dict(zip(HAND_DOF_NAMES, jumps.round(1)))
    # follows the recording: open at the start and end, closed while the fist is held
    held = np.flatnonzero(closure == 1.0)
    assert np.all(out[0, FINGER_DOFS] > 900) and np.all(out[-1, FINGER_DOFS] > 900)
    assert np.all(out[held[-1], FINGER_DOFS] < 100) and out[held[-1], THUMB_BEND] < 450
    # and closing is monotone enough: finger units correlate negatively with the closure
    for j in FINGER_DOFS:
        assert np.corrcoef(out[:, j], closure)[0, 1] < -0.9


if __name__ == "__main__":  # regenerate the recorded sequence
    DATA.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(DATA, **make_recording())
    print(DATA, DATA.stat().st_size, "bytes")
