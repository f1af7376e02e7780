"""MJCF scene of the simulated task world: the franky-sim FR3 (meshes loaded from the installed wheel), an
Inspire-style 6-actuator hand built from primitives on its flange, a table, cameras and the task objects.

The FR3 model is read from ``franky_sim/assets/fr3.xml`` at run time; its Franka gripper (body ``hand``, the
``split`` tendon, the finger equality and the gripper actuator) is removed and replaced by the hand below.

Hand frame (body ``hand_base``, on the FR3 flange): +z points out of the flange along the fingers (open hand),
+y is the palm normal, +x runs from the index finger to the pinky (the thumb sits on the -x side). Fingers (pinky, ring, middle, index) have a
proximal and a distal hinge; the distal one is coupled to the proximal one by a joint equality (polynomial
coupling, like the real linkage). The thumb has a rotation hinge (opposition) and three bend hinges, the second
and third coupled to the first. That is 12 hand joints driven by 6 position actuators (Inspire DoF order).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embodiment import ARM_JOINT_NAMES, HAND_DOF_NAMES

TASKS = ("water_plant", "put_three_obj", "wipe_board")
VARIANTS = ("seen", "unseen")

# Hand kinematics: (actuated joint, coupled joints with coefficient), closed angle of the actuated joint [rad].
FINGERS = HAND_DOF_NAMES[:4]  # the four fingers (the thumb has two DoFs)
FINGER_X = {"pinky": 0.033, "ring": 0.011, "middle": -0.011, "index": -0.033}
FINGER_CLOSED = 1.45  # proximal closed angle [rad] (Inspire RH56: ~1.47)
DISTAL_COUPLING = 1.08  # distal = 1.08 * proximal
THUMB_ROT_CLOSED = 1.30
THUMB_BEND_CLOSED = 0.55
THUMB_COUPLING = (1.30, 0.90)  # bend2 = 1.3 * bend1, bend3 = 0.9 * bend1
# actuated joint per Inspire DoF, and its range (joint angle at 1000 = open is 0)
HAND_ACTUATED_JOINTS = ("pinky_prox", "ring_prox", "middle_prox", "index_prox", "thumb_bend1", "thumb_rot")
HAND_CLOSED_ANGLE = np.array([FINGER_CLOSED] * 4 + [THUMB_BEND_CLOSED, THUMB_ROT_CLOSED])
assert len(HAND_ACTUATED_JOINTS) == len(HAND_DOF_NAMES)

# FR3 joint servo damping. fr3.xml's position actuators (kp, kv = kp x 0.1 s) are integrated implicitly
# (implicitfast), which is stable for any kv while the servo torque is inside the joint's torque limit
# (actuatorfrcrange: 87 Nm joints 1-4, 12 Nm joints 5-7). Once the limit clamps it, the clamped torque no longer
# depends on velocity and MuJoCo integrates it explicitly; explicit damping is stable only for kv * dt / I < 2,
# I the joint's effective inertia (1 / (M^-1)_jj, rotor armature included). Joint 7 (I = 0.075 kg m^2: armature
# 0.074 plus the hand about the flange axis) has kv * dt / I = 200 x 0.002 / 0.075 = 5.3: after a hold it could
# lock into a 250 Hz limit cycle in which the clamp flips sign every 2 ms step (dq = +-0.156 rad/s around a
# still position: +-12 Nm x 2 ms / I = 2 x 0.16 rad/s). Joints 1, 3, 5 and 6 exceed 2 in parts of their range too.
# So each servo's kv is capped at ARM_SERVO_KV_DT_OVER_INERTIA x I_min / timestep, I_min the smallest effective
# inertia of that joint over the FR3 joint ranges with the hand (sampled, rounded down); kp is unchanged. With a
# 2 ms step this gives kv = 202, 450 (unchanged), 180, 255, 71, 79, 56: still at least critically damped at I_min
# and near it at the largest inertias (joint 1 stretched out: damping ratio 0.8). (libfranka's joint impedance
# example uses 50 / 30 / 25 / 15 Nm s/rad.)
ARM_MIN_EFFECTIVE_INERTIA = (0.27, 0.70, 0.24, 0.34, 0.095, 0.105, 0.074)  # kg m^2, per joint, lower bounds
ARM_SERVO_KV_DT_OVER_INERTIA = 1.5  # < 2 with a margin: explicitly integrated damping decays without sign flips


def arm_servo_kv(kv_model: float, joint_index: int, timestep: float) -> float:
    """Damping gain of FR3 joint ``joint_index`` (0-based) servo for a ``timestep`` physics step: fr3.xml's kv,
    capped so that the servo stays damped when its torque limit clamps it (see ARM_MIN_EFFECTIVE_INERTIA)."""
    return min(float(kv_model), ARM_SERVO_KV_DT_OVER_INERTIA * ARM_MIN_EFFECTIVE_INERTIA[joint_index] / timestep)

# L515-like colour camera: ~70 deg horizontal field of view, square pixels, centred principal point.
L515_HFOV_DEG = 70.0

INK_SEEN = (0.08, 0.10, 0.55, 1.0)  # blue-black whiteboard marker
INK_UNSEEN = (0.85, 0.08, 0.08, 1.0)  # red marker


def franky_sim_assets() -> Path:
    """The installed franky-sim package's asset folder (fr3.xml + meshes)."""
    try:
        import franky_sim
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the simulated world needs the franky-sim package (pip install franky-sim==1.0.4) "
                           "for the FR3 model and meshes") from exc
    assets = Path(franky_sim.__file__).resolve().parent / "assets"
    if not (assets / "fr3.xml").is_file():
        raise RuntimeError(f"franky-sim is installed but {assets / 'fr3.xml'} is missing")
    return assets


def camera_fovy(width: int, height: int, hfov_deg: float = L515_HFOV_DEG) -> tuple[float, float]:
    """(fovy in degrees, focal length in pixels) for square pixels with the given horizontal field of view."""
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return math.degrees(2.0 * math.atan((height / 2.0) / f)), f


def _fmt(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in np.atleast_1d(v))


def _lookat_xyaxes(pos, target) -> str:
    pos, target = np.asarray(pos, float), np.asarray(target, float)
    fwd = target - pos
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    return _fmt(np.concatenate([right, up]))


@dataclass(frozen=True)
class SceneSpec:
    task: str
    variant: str
    render_width: int
    render_height: int
    timestep: float = 0.002


# ------------------------------------------------------------------------------------------------ hand
def _hand_xml() -> str:
    g = 'contype="1" conaffinity="1" friction="1.2 0.02 0.001" condim="4" solref="0.004 1"'
    # the index finger also collides with the trigger (bit 2)
    gi = 'contype="3" conaffinity="3" friction="1.2 0.02 0.001" condim="4" solref="0.004 1"'
    skin = 'rgba="0.82 0.82 0.85 1"'
    dark = 'rgba="0.2 0.2 0.22 1"'
    parts = [f'''
<body name="hand_base" pos="0 0 0.107" gravcomp="1" childclass="inspire">
  <inertial pos="0 0 0.07" mass="0.55" diaginertia="0.0012 0.001 0.0005"/>
  <geom name="hand_mount" type="cylinder" size="0.034 0.01" pos="0 0 0.01" {dark} {g}/>
  <geom name="palm" type="box" size="0.044 0.015 0.05" pos="0 0 0.07" {skin} {g}/>
  <site name="grasp_site" pos="0 0.05 0.10" size="0.006" rgba="1 0 0 0.0"/>
  <site name="palm_site" pos="0 0.016 0.08" size="0.005" rgba="0 1 0 0.0"/>''']
    for f in FINGERS:
        x = FINGER_X[f]
        gg = gi if f == "index" else g
        plen, dlen = (0.046, 0.036) if f in ("middle", "index") else (0.042, 0.032)
        parts.append(f'''
  <body name="{f}_proximal" pos="{x} 0.004 0.12" gravcomp="1">
    <inertial pos="0 0 0.02" mass="0.012" diaginertia="2e-6 2e-6 5e-7"/>
    <joint name="{f}_prox" type="hinge" axis="-1 0 0" range="0 {FINGER_CLOSED}" damping="0.02" armature="0.002"/>
    <geom name="{f}_prox_geom" type="capsule" fromto="0 0 0 0 0 {plen}" size="0.0085" {skin} {gg}/>
    <body name="{f}_distal" pos="0 0 {plen}" gravcomp="1">
      <inertial pos="0 0 0.015" mass="0.008" diaginertia="1e-6 1e-6 3e-7"/>
      <joint name="{f}_dist" type="hinge" axis="-1 0 0" range="0 {FINGER_CLOSED * DISTAL_COUPLING + 0.05}"
             damping="0.01" armature="0.001"/>
      <geom name="{f}_dist_geom" type="capsule" fromto="0 0 0 0 0 {dlen}" size="0.008" {dark} {gg}/>
      <site name="{f}_tip" pos="0 0 {dlen}" size="0.004"/>
    </body>
  </body>''')
    b1, b2 = THUMB_COUPLING
    parts.append(f'''
  <body name="thumb_base" pos="-0.036 0.016 0.045" gravcomp="1">
    <inertial pos="-0.01 0 0" mass="0.015" diaginertia="2e-6 2e-6 5e-7"/>
    <joint name="thumb_rot" type="hinge" axis="0 0 -1" range="0 {THUMB_ROT_CLOSED}" damping="0.02" armature="0.002"/>
    <geom name="thumb_base_geom" type="capsule" fromto="0 0 0 -0.02 0 0.005" size="0.01" {dark} {g}/>
    <body name="thumb_p1" pos="-0.02 0 0.005" gravcomp="1">
      <inertial pos="-0.015 0 0" mass="0.01" diaginertia="1e-6 1e-6 3e-7"/>
      <joint name="thumb_bend1" type="hinge" axis="0 1 0" range="0 {THUMB_BEND_CLOSED}" damping="0.02"
             armature="0.002"/>
      <geom name="thumb_p1_geom" type="capsule" fromto="0 0 0 -0.03 0 0.012" size="0.009" {skin} {g}/>
      <body name="thumb_p2" pos="-0.03 0 0.012" gravcomp="1">
        <inertial pos="-0.01 0 0" mass="0.006" diaginertia="5e-7 5e-7 2e-7"/>
        <joint name="thumb_bend2" type="hinge" axis="0 1 0" range="0 {THUMB_BEND_CLOSED * b1 + 0.05}"
               damping="0.01" armature="0.001"/>
        <geom name="thumb_p2_geom" type="capsule" fromto="0 0 0 -0.022 0 0.006" size="0.0085" {skin} {g}/>
        <body name="thumb_p3" pos="-0.022 0 0.006" gravcomp="1">
          <inertial pos="-0.01 0 0" mass="0.005" diaginertia="4e-7 4e-7 2e-7"/>
          <joint name="thumb_bend3" type="hinge" axis="0 1 0" range="0 {THUMB_BEND_CLOSED * b2 + 0.05}"
                 damping="0.01" armature="0.001"/>
          <geom name="thumb_p3_geom" type="capsule" fromto="0 0 0 -0.02 0 0" size="0.008" {dark} {g}/>
          <site name="thumb_tip" pos="-0.02 0 0" size="0.004"/>
        </body>
      </body>
    </body>
  </body>
</body>''')
    return "".join(parts)


def _hand_equalities() -> str:
    b1, b2 = THUMB_COUPLING
    eq = [f'<joint name="{f}_coupling" joint1="{f}_dist" joint2="{f}_prox" polycoef="0 {DISTAL_COUPLING} 0 0 0" '
          f'solref="0.005 1"/>' for f in FINGERS]
    eq.append(f'<joint name="thumb_coupling2" joint1="thumb_bend2" joint2="thumb_bend1" polycoef="0 {b1} 0 0 0" '
              f'solref="0.005 1"/>')
    eq.append(f'<joint name="thumb_coupling3" joint1="thumb_bend3" joint2="thumb_bend1" polycoef="0 {b2} 0 0 0" '
              f'solref="0.005 1"/>')
    return "\n".join(eq)


def _hand_actuators() -> str:
    out = []
    for name, joint, closed in zip(HAND_DOF_NAMES, HAND_ACTUATED_JOINTS, HAND_CLOSED_ANGLE):
        kp, frc = (3.0, 0.8) if "thumb" not in name else (3.0, 1.0)
        out.append(f'<position name="hand_{name}" joint="{joint}" kp="{kp}" kv="0.08" ctrlrange="0 {closed:.6g}" '
                   f'forcerange="-{frc} {frc}"/>')
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------- tasks
def _tablecloth_texture(task: str, variant: str) -> str:
    if task == "put_three_obj" and variant == "unseen":
        # changed tablecloth pattern: small red/cream checks with random dots instead of large blue/white squares
        return ('<texture name="tablecloth" type="2d" builtin="checker" width="512" height="512" '
                'rgb1="0.80 0.22 0.18" rgb2="0.95 0.90 0.78" mark="random" random="0.02" markrgb="0.2 0.5 0.2"/>'
                '<material name="tablecloth" texture="tablecloth" texrepeat="14 14" reflectance="0.0"/>')
    return ('<texture name="tablecloth" type="2d" builtin="checker" width="512" height="512" '
            'rgb1="0.55 0.62 0.75" rgb2="0.86 0.88 0.92" mark="edge" markrgb="0.4 0.45 0.55"/>'
            '<material name="tablecloth" texture="tablecloth" texrepeat="5 5" reflectance="0.0"/>')


def _water_plant_xml(variant: str) -> tuple[str, str]:
    bottle_rgba = "0.20 0.55 0.85 0.9" if variant == "seen" else "0.85 0.45 0.70 0.9"
    head_rgba = "0.95 0.95 0.95 1" if variant == "seen" else "0.25 0.25 0.25 1"
    obj = 'contype="1" conaffinity="1" friction="1.0 0.02 0.001" condim="4"'
    body = f'''
<body name="bottle" pos="0.4 0.1 0">
  <freejoint name="bottle_free"/>
  <geom name="bottle_body" type="cylinder" size="0.035 0.075" pos="0 0 0.075" mass="0.25" rgba="{bottle_rgba}" {obj}/>
  <geom name="bottle_neck" type="cylinder" size="0.015 0.015" pos="0 0 0.165" mass="0.01" rgba="{head_rgba}" {obj}/>
  <geom name="bottle_head" type="box" size="0.045 0.018 0.018" pos="0.02 0 0.198" mass="0.02" rgba="{head_rgba}" {obj}/>
  <geom name="bottle_nozzle" type="cylinder" size="0.007 0.008" pos="0.072 0 0.203" euler="0 1.5708 0" mass="0.002"
        rgba="0.15 0.15 0.15 1" {obj}/>
  <site name="nozzle" pos="0.08 0 0.203" size="0.004" rgba="1 0 0 0"/>
  <geom name="spray" type="ellipsoid" size="0.09 0.03 0.03" pos="0.17 0 0.203" contype="0" conaffinity="0"
        mass="0" rgba="0.7 0.85 1.0 0"/>
  <geom name="trigger_guard" type="box" size="0.008 0.016 0.004" pos="0.0 -0.03 0.181" mass="0.002"
        rgba="{head_rgba}" contype="0" conaffinity="0"/>
  <body name="trigger" pos="0.0 -0.045 0.163">
    <joint name="trigger_joint" type="slide" axis="0 1 0" range="0 0.012" stiffness="40" springref="0"
           damping="0.5" armature="0.01"/>
    <geom name="trigger_geom" type="box" size="0.009 0.006 0.014" mass="0.005"
          rgba="0.15 0.15 0.15 1" contype="2" conaffinity="2" friction="1.0 0.02 0.001" condim="4"/>
  </body>
</body>'''
    pot_rgba = "0.55 0.30 0.15 1" if variant == "seen" else "0.30 0.30 0.35 1"
    plant = f'''
<body name="plant" pos="0.55 -0.35 0">
  <geom name="pot" type="cylinder" size="0.06 0.05" pos="0 0 0.05" rgba="{pot_rgba}" {obj}/>
  <geom name="soil" type="cylinder" size="0.055 0.003" pos="0 0 0.1" rgba="0.25 0.15 0.08 1" contype="0" conaffinity="0"/>
  <geom name="stem" type="capsule" fromto="0 0 0.1 0 0 0.2" size="0.006" rgba="0.2 0.5 0.15 1" contype="0" conaffinity="0"/>
  <geom name="leaf1" type="ellipsoid" size="0.06 0.03 0.01" pos="0.03 0 0.19" euler="0 -0.4 0" rgba="0.2 0.65 0.2 1" contype="0" conaffinity="0"/>
  <geom name="leaf2" type="ellipsoid" size="0.06 0.03 0.01" pos="-0.03 0.01 0.21" euler="0 0.4 0.5" rgba="0.25 0.7 0.2 1" contype="0" conaffinity="0"/>
  <geom name="leaf3" type="ellipsoid" size="0.05 0.03 0.01" pos="0 -0.03 0.23" euler="0.4 0 1.2" rgba="0.15 0.6 0.2 1" contype="0" conaffinity="0"/>
  <site name="plant_target" pos="0 0 0.2" size="0.01" rgba="0 1 0 0"/>
</body>'''
    return body + plant, ""


def _put_three_obj_xml(variant: str) -> tuple[str, str]:
    wood = 'rgba="0.62 0.45 0.28 1"'
    col = 'contype="1" conaffinity="1" friction="0.8 0.02 0.001" condim="3"'
    # cabinet: opening faces -x (toward the robot); front plane at x = 0 in the cabinet frame
    cab = f'''
<body name="cabinet" pos="0.56 0 0">
  <geom name="cab_left" type="box" size="0.13 0.01 0.07" pos="0.13 0.225 0.07" {wood} {col}/>
  <geom name="cab_right" type="box" size="0.13 0.01 0.07" pos="0.13 -0.225 0.07" {wood} {col}/>
  <geom name="cab_top" type="box" size="0.13 0.235 0.01" pos="0.13 0 0.15" {wood} {col}/>
  <geom name="cab_back" type="box" size="0.01 0.235 0.07" pos="0.25 0 0.07" {wood} {col}/>
  <body name="drawer" pos="0 0 0">
    <joint name="drawer_slide" type="slide" axis="-1 0 0" range="0 0.22" damping="6" frictionloss="8" armature="0.5"/>
    <geom name="drawer_bottom" type="box" size="0.12 0.21 0.005" pos="0.12 0 0.01" mass="0.5" rgba="0.85 0.80 0.70 1" {col}/>
    <geom name="drawer_front" type="box" size="0.008 0.215 0.055" pos="-0.004 0 0.06" mass="0.3" {wood} {col}/>
    <geom name="drawer_back" type="box" size="0.006 0.21 0.04" pos="0.234 0 0.05" mass="0.2" rgba="0.85 0.80 0.70 1" {col}/>
    <geom name="drawer_left" type="box" size="0.12 0.006 0.04" pos="0.12 0.206 0.05" mass="0.2" rgba="0.85 0.80 0.70 1" {col}/>
    <geom name="drawer_right" type="box" size="0.12 0.006 0.04" pos="0.12 -0.206 0.05" mass="0.2" rgba="0.85 0.80 0.70 1" {col}/>
    <geom name="handle_l" type="box" size="0.02 0.008 0.008" pos="-0.028 0.05 0.07" mass="0.01" rgba="0.3 0.3 0.3 1" {col}/>
    <geom name="handle_r" type="box" size="0.02 0.008 0.008" pos="-0.028 -0.05 0.07" mass="0.01" rgba="0.3 0.3 0.3 1" {col}/>
    <geom name="handle_bar" type="capsule" fromto="-0.045 -0.058 0.07 -0.045 0.058 0.07" size="0.008" mass="0.02"
          rgba="0.3 0.3 0.3 1" {col}/>
    <site name="handle" pos="-0.045 0 0.07" size="0.005" rgba="1 0 0 0"/>
  </body>
</body>'''
    fcol = 'contype="1" conaffinity="1" friction="1.2 0.02 0.005" condim="6"'
    fruits = f'''
<body name="fruit1" pos="0.4 0.3 0.04">
  <freejoint name="fruit1_free"/>
  <geom name="fruit1_geom" type="ellipsoid" size="0.036 0.036 0.03" mass="0.15" rgba="0.80 0.08 0.08 1" {fcol}/>
  <geom type="capsule" fromto="0 0 0.03 0 0.004 0.045" size="0.003" mass="0.001" rgba="0.35 0.2 0.05 1" contype="0" conaffinity="0"/>
</body>
<body name="fruit2" pos="0.4 -0.3 0.02">
  <freejoint name="fruit2_free"/>
  <geom name="fruit2_geom" type="capsule" fromto="0 -0.045 0 0 0.045 0" size="0.018" mass="0.08" rgba="0.95 0.85 0.15 1" {fcol}/>
  <geom name="fruit2_end1" type="capsule" fromto="0 0.045 0 0.012 0.075 0.006" size="0.015" mass="0.02" rgba="0.92 0.82 0.15 1" {fcol}/>
  <geom name="fruit2_end2" type="capsule" fromto="0 -0.045 0 0.012 -0.075 0.006" size="0.015" mass="0.02" rgba="0.92 0.82 0.15 1" {fcol}/>
  <geom type="capsule" fromto="0.012 0.075 0.006 0.016 0.085 0.01" size="0.005" mass="0.001" rgba="0.3 0.25 0.1 1" contype="0" conaffinity="0"/>
</body>
<body name="fruit3" pos="0.3 0.3 0.04">
  <freejoint name="fruit3_free"/>
  <geom name="fruit3_geom" type="ellipsoid" size="0.034 0.034 0.029" mass="0.14" rgba="1.0 0.55 0.05 1" {fcol}/>
</body>'''
    return cab + fruits, ""


def _wipe_board_xml(variant: str, ink_positions: np.ndarray) -> tuple[str, str]:
    ink = INK_SEEN if variant == "seen" else INK_UNSEEN
    col = 'contype="1" conaffinity="1" friction="0.5 0.02 0.001" condim="3"'
    board = f'''
<body name="board" pos="0.5 0.05 0">
  <geom name="board_frame" type="box" size="0.17 0.25 0.008" pos="0 0 0.008" rgba="0.55 0.55 0.6 1" {col}/>
  <geom name="board_surface" type="box" size="0.16 0.24 0.003" pos="0 0 0.019" rgba="0.97 0.97 0.97 1" {col}/>
</body>'''
    marks = [f'<geom name="ink{i}" type="box" size="0.009 0.009 0.0004" pos="{x:.4f} {y:.4f} 0.0225" '
             f'euler="0 0 {a:.3f}" rgba="{_fmt(ink)}" contype="0" conaffinity="0" group="1"/>'
             for i, (x, y, a) in enumerate(ink_positions)]
    cloth = f'''
<body name="cloth" pos="0.4 -0.35 0.01">
  <freejoint name="cloth_free"/>
  <geom name="cloth_geom" type="box" size="0.055 0.055 0.008" mass="0.06" rgba="0.95 0.75 0.2 1"
        contype="1" conaffinity="1" friction="1.0 0.02 0.001" condim="4" solref="0.01 1" solimp="0.9 0.95 0.003"/>
</body>'''
    return board + "\n".join(marks) + cloth, ""


def ink_layout(rng: np.random.Generator, board_xy: np.ndarray, n_rows: int = 5, n_cols: int = 7) -> np.ndarray:
    """Ink mark centres (x, y, yaw) in world coordinates: a jittered grid over a marked region of the board."""
    cx = board_xy[0] + rng.uniform(-0.03, 0.03)
    cy = board_xy[1] + rng.uniform(-0.05, 0.05)
    xs = np.linspace(-0.06, 0.06, n_rows)
    ys = np.linspace(-0.10, 0.10, n_cols)
    pts = []
    for x in xs:
        for y in ys:
            pts.append((cx + x + rng.uniform(-0.006, 0.006), cy + y + rng.uniform(-0.006, 0.006),
                        rng.uniform(0, math.pi)))
    return np.array(pts)


# ----------------------------------------------------------------------------------------------- scene
def build_scene_xml(spec: SceneSpec, ink_positions: np.ndarray | None = None) -> str:
    """Full MJCF string of the scene for ``spec.task`` / ``spec.variant``."""
    if spec.task not in TASKS:
        raise ValueError(f"unknown task {spec.task!r}; choose one of {TASKS}")
    if spec.variant not in VARIANTS:
        raise ValueError(f"unknown variant {spec.variant!r}; choose one of {VARIANTS}")
    assets = franky_sim_assets()
    root = ET.parse(assets / "fr3.xml").getroot()
    compiler = root.find("compiler")
    compiler.set("meshdir", str(assets / "meshes"))
    option = root.find("option")
    option.set("timestep", f"{spec.timestep:g}")
    option.set("cone", "elliptic")
    option.set("noslip_iterations", "2")

    # remove the Franka gripper and everything that refers to it
    worldbody = root.find("worldbody")
    link7 = None
    for body in worldbody.iter("body"):
        if body.get("name") == "fr3_link7":
            link7 = body
        if body.get("name", "").startswith("fr3_link"):
            body.set("gravcomp", "1")
    gripper = [b for b in link7.findall("body") if b.get("name") == "hand"]
    for b in gripper:
        link7.remove(b)
    for tag in ("tendon", "equality", "keyframe"):
        el = root.find(tag)
        if el is not None:
            root.remove(el)
    actuator = root.find("actuator")
    for act in list(actuator):
        if act.get("name") == "hand":
            actuator.remove(act)
        elif act.get("joint") in ARM_JOINT_NAMES:
            j = ARM_JOINT_NAMES.index(act.get("joint"))
            act.set("kv", f"{arm_servo_kv(float(act.get('kv')), j, spec.timestep):.6g}")
    # the hand's own defaults (the FR3 ones add 1.1 Nm joint friction, far above a finger's torque)
    root.find("default").append(ET.fromstring(
        '<default class="inspire"><joint frictionloss="0" damping="0.02" armature="0.002" actuatorfrcrange="0 0"/>'
        '<geom group="0"/><site group="5"/></default>'))
    # FR3 flange: the hand sits on link7 (flange plane 0.107 m along link7's z)
    link7.append(ET.fromstring(_hand_xml()))
    for el in ET.fromstring(f"<a>{_hand_actuators()}</a>"):
        actuator.append(el)
    equality = ET.SubElement(root, "equality")
    for el in ET.fromstring(f"<a>{_hand_equalities()}</a>"):
        equality.append(el)

    # task objects
    if spec.task == "water_plant":
        objects, _ = _water_plant_xml(spec.variant)
        graspable = ["bottle"]
    elif spec.task == "put_three_obj":
        objects, _ = _put_three_obj_xml(spec.variant)
        graspable = ["drawer", "fruit1", "fruit2", "fruit3"]
    else:
        if ink_positions is None:
            raise ValueError("wipe_board needs ink_positions")
        objects, _ = _wipe_board_xml(spec.variant, ink_positions)
        graspable = ["cloth"]
    # grasp assist: one weld per graspable body, off until the hand closes on it (see grasp.GraspAssist)
    for name in graspable:
        ET.SubElement(equality, "weld", name=f"grasp_{name}", body1="hand_base", body2=name, active="false",
                      solref="0.01 1", solimp="0.9 0.95 0.001")

    # world: floor, table (top at z = 0, the robot base stands on it), lights, cameras
    fovy, _ = camera_fovy(spec.render_width, spec.render_height)
    cams = {"camera_front": ((0.30, -0.82, 0.64), (0.52, 0.0, 0.04))}
    if spec.task == "wipe_board":
        cams["camera_side"] = ((1.10, 0.30, 0.62), (0.48, 0.0, 0.0))
    cam_xml = "".join(f'<camera name="{n}" pos="{_fmt(p)}" xyaxes="{_lookat_xyaxes(p, t)}" fovy="{fovy:.5f}"/>'
                      for n, (p, t) in cams.items())
    world_xml = f'''
<a>
  <light name="sun" pos="0.5 -0.3 2.0" dir="0 0.15 -1" directional="true" diffuse="0.7 0.7 0.7" specular="0.1 0.1 0.1"
         castshadow="false"/>
  <light name="fill" pos="1.5 1.0 1.5" dir="-0.6 -0.5 -0.6" diffuse="0.3 0.3 0.3" specular="0 0 0" castshadow="false"/>
  <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" material="floor" contype="1" conaffinity="1"/>
  <geom name="table" type="box" size="0.65 0.8 0.02" pos="0.4 0 -0.02" material="tablecloth" contype="1"
        conaffinity="1" friction="0.9 0.02 0.001"/>
  <geom name="table_leg" type="box" size="0.6 0.75 0.36" pos="0.4 0 -0.4" rgba="0.35 0.3 0.25 1" contype="0"
        conaffinity="0"/>
  {cam_xml}
  {objects}
</a>'''
    for el in ET.fromstring(world_xml):
        worldbody.append(el)
    asset = root.find("asset")
    for el in ET.fromstring(f"<a>{_tablecloth_texture(spec.task, spec.variant)}"
                            '<texture name="floor" type="2d" builtin="flat" width="64" height="64" rgb1="0.45 0.45 0.47"/>'
                            '<material name="floor" texture="floor"/></a>'):
        asset.append(el)
    visual = ET.SubElement(root, "visual")
    ET.SubElement(visual, "global", offwidth=str(max(640, spec.render_width)),
                  offheight=str(max(480, spec.render_height)))
    ET.SubElement(visual, "headlight", diffuse="0.35 0.35 0.35", ambient="0.25 0.25 0.25", specular="0 0 0")
    ET.SubElement(visual, "quality", shadowsize="2048")
    return ET.tostring(root, encoding="unicode")
