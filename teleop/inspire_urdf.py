"""URDF of the Inspire RH56 (right hand) generated from the project's own hand model, for dex-retargeting.

The simulated hand (``hardware.sim.scene``: ``_hand_xml`` / ``_hand_equalities``) is the single source of its
kinematics. This module reads that MJCF body tree and its joint equalities and writes them as a URDF:

- one link per MJCF body (``hand_base``, ``<finger>_proximal``, ``<finger>_distal``, ``thumb_base``,
  ``thumb_p1..p3``), with the body's inertial and its primitive geoms as visuals;
- one revolute joint per MJCF hinge, named like the MJCF joint, origin = the body's position, same axis and
  range. The six actuated joints (``hardware.sim.scene.HAND_ACTUATED_JOINTS``: ``pinky_prox``, ``ring_prox``,
  ``middle_prox``, ``index_prox``, ``thumb_bend1``, ``thumb_rot``) carry the RH56 ranges of the model
  (0 = open .. ``HAND_CLOSED_ANGLE``);
- the coupled joints (``<finger>_dist``, ``thumb_bend2``, ``thumb_bend3``), coupled in MuJoCo by a linear joint
  equality ``q1 = c0 + c1 * q2``, become ``<mimic joint=q2 multiplier=c1 offset=c0>``;
- each MJCF site (``<finger>_tip``, ``thumb_tip``, ``palm_site``, ``grasp_site``) becomes a link on a fixed joint,
  so that dex-retargeting can name the fingertips.

The generated file is committed at ``teleop/assets/inspire_rh56_right.urdf``; a test regenerates it and compares,
so the URDF cannot drift from the simulated hand. Regenerate with ``python -m teleop.inspire_urdf`` (``--check``
only compares).

Frame (root link ``hand_base``, as in the simulated hand): +z out of the flange along the open fingers, +y the palm
normal (the side the fingers close towards), +x from the index finger towards the pinky (thumb on the -x side).
"""
from __future__ import annotations

import argparse
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

__all__ = ["URDF_PATH", "ROOT_LINK", "generate_urdf", "write_urdf", "main"]

URDF_PATH = Path(__file__).resolve().parent / "assets" / "inspire_rh56_right.urdf"
ROOT_LINK = "hand_base"
ROBOT_NAME = "inspire_rh56_right"
# URDF needs effort / velocity limits on revolute joints; retargeting does not use them. Effort: the simulated
# actuators' force range (0.8 Nm fingers, 1.0 Nm thumb); velocity: a conservative bound for a finger joint.
_EFFORT = {"finger": 0.8, "thumb": 1.0}
_VELOCITY = 3.0  # rad/s


def _f(x: float) -> str:
    v = float(x)
    if v == 0.0:
        v = 0.0  # no "-0"
    return f"{v:.6g}"


def _vec(v) -> str:
    return " ".join(_f(x) for x in np.atleast_1d(np.asarray(v, dtype=float)))


def _floats(text: str | None, n: int, default: float = 0.0) -> np.ndarray:
    if text is None:
        return np.full(n, default, dtype=float)
    out = np.array([float(s) for s in text.split()], dtype=float)
    if out.shape != (n,):
        raise ValueError(f"expected {n} numbers, got {text!r}")
    return out


def _rpy_z_to(direction: np.ndarray) -> np.ndarray:
    """Roll-pitch-yaw (URDF, fixed-axis XYZ) of a rotation taking +z onto ``direction``."""
    d = direction / np.linalg.norm(direction)
    # rotation = Rz(yaw) @ Ry(pitch): z -> (cos(yaw) sin(pitch), sin(yaw) sin(pitch), cos(pitch))
    pitch = math.acos(max(-1.0, min(1.0, d[2])))
    yaw = math.atan2(d[1], d[0]) if math.hypot(d[0], d[1]) > 1e-12 else 0.0
    return np.array([0.0, pitch, yaw])


def _visual(parent: ET.Element, geom: ET.Element) -> None:
    """A primitive MJCF geom (capsule with fromto, cylinder, box) as a URDF visual."""
    kind = geom.get("type", "sphere")
    size = _floats(geom.get("size"), len(geom.get("size", "0").split()))
    pos = _floats(geom.get("pos"), 3)
    rpy = np.zeros(3)
    if kind == "capsule" and geom.get("fromto") is not None:
        ft = _floats(geom.get("fromto"), 6)
        a, b = ft[:3], ft[3:]
        pos, length = (a + b) / 2.0, float(np.linalg.norm(b - a))
        rpy = _rpy_z_to(b - a)
        shape = ET.Element("cylinder", radius=_f(size[0]), length=_f(length))
    elif kind == "cylinder":
        shape = ET.Element("cylinder", radius=_f(size[0]), length=_f(2.0 * size[1]))
    elif kind == "box":
        shape = ET.Element("box", size=_vec(2.0 * size))
    else:  # not used by the hand model today
        raise ValueError(f"no URDF visual for MJCF geom type {kind!r} ({geom.get('name')})")
    for attr in ("quat", "euler", "axisangle", "xyaxes", "zaxis"):
        if geom.get(attr) is not None:
            raise ValueError(f"geom {geom.get('name')}: orientation attribute {attr!r} is not supported")
    vis = ET.SubElement(parent, "visual", name=geom.get("name", ""))
    ET.SubElement(vis, "origin", xyz=_vec(pos), rpy=_vec(rpy))
    ET.SubElement(vis, "geometry").append(shape)


def _link(robot: ET.Element, body: ET.Element) -> None:
    link = ET.SubElement(robot, "link", name=body.get("name"))
    inert = body.find("inertial")
    if inert is not None:
        el = ET.SubElement(link, "inertial")
        ET.SubElement(el, "origin", xyz=_vec(_floats(inert.get("pos"), 3)), rpy="0 0 0")
        ET.SubElement(el, "mass", value=_f(float(inert.get("mass"))))
        d = _floats(inert.get("diaginertia"), 3)
        ET.SubElement(el, "inertia", ixx=_f(d[0]), ixy="0", ixz="0", iyy=_f(d[1]), iyz="0", izz=_f(d[2]))
    for geom in body.findall("geom"):
        _visual(link, geom)


def _check_no_rotation(el: ET.Element) -> None:
    for attr in ("quat", "euler", "axisangle", "xyaxes", "zaxis"):
        if el.get(attr) is not None:
            raise ValueError(f"{el.tag} {el.get('name')}: orientation attribute {attr!r} is not supported by the "
                             "URDF generator; extend teleop/inspire_urdf.py")


def _couplings(equalities_xml: str) -> dict[str, tuple[str, float, float]]:
    """mimic joint -> (source joint, multiplier, offset), from MuJoCo joint equalities q1 = c0 + c1 q2."""
    out = {}
    for eq in ET.fromstring(f"<a>{equalities_xml}</a>"):
        if eq.tag != "joint":
            continue
        poly = _floats(eq.get("polycoef"), 5)
        if np.any(poly[2:] != 0.0):
            raise ValueError(f"equality {eq.get('name')}: only linear couplings map onto URDF mimic joints")
        out[eq.get("joint1")] = (eq.get("joint2"), float(poly[1]), float(poly[0]))
    return out


def generate_urdf() -> str:
    """The URDF text of the simulated hand (deterministic: same model -> same bytes)."""
    from hardware.sim.scene import HAND_ACTUATED_JOINTS, HAND_CLOSED_ANGLE, _hand_equalities, _hand_xml

    root_body = ET.fromstring(_hand_xml())
    if root_body.get("name") != ROOT_LINK:
        raise ValueError(f"hand model's root body is {root_body.get('name')!r}, expected {ROOT_LINK!r}")
    mimic = _couplings(_hand_equalities())
    actuated = dict(zip(HAND_ACTUATED_JOINTS, HAND_CLOSED_ANGLE))

    robot = ET.Element("robot", name=ROBOT_NAME)
    joints_seen: list[str] = []

    def visit(body: ET.Element, parent: str | None) -> None:
        name = body.get("name")
        _check_no_rotation(body)
        _link(robot, body)
        if parent is not None:
            hinges = body.findall("joint")
            if len(hinges) > 1:
                raise ValueError(f"body {name}: more than one joint")
            pos = _floats(body.get("pos"), 3)
            if hinges:
                j = hinges[0]
                if j.get("type", "hinge") != "hinge":
                    raise ValueError(f"joint {j.get('name')}: only hinges are supported")
                if np.any(_floats(j.get("pos"), 3) != 0.0):
                    raise ValueError(f"joint {j.get('name')}: an offset joint position is not supported")
                jname = j.get("name")
                lo, hi = _floats(j.get("range"), 2)
                if jname in actuated and not math.isclose(hi, float(actuated[jname])):
                    raise ValueError(f"actuated joint {jname}: range {hi} differs from HAND_CLOSED_ANGLE")
                joint = ET.SubElement(robot, "joint", name=jname, type="revolute")
                ET.SubElement(joint, "parent", link=parent)
                ET.SubElement(joint, "child", link=name)
                ET.SubElement(joint, "origin", xyz=_vec(pos), rpy="0 0 0")
                ET.SubElement(joint, "axis", xyz=_vec(_floats(j.get("axis"), 3)))
                effort = _EFFORT["thumb" if jname.startswith("thumb") else "finger"]
                ET.SubElement(joint, "limit", lower=_f(lo), upper=_f(hi), effort=_f(effort), velocity=_f(_VELOCITY))
                if jname in mimic:
                    src, mul, off = mimic[jname]
                    ET.SubElement(joint, "mimic", joint=src, multiplier=_f(mul), offset=_f(off))
                joints_seen.append(jname)
            else:
                joint = ET.SubElement(robot, "joint", name=f"{name}_fixed", type="fixed")
                ET.SubElement(joint, "parent", link=parent)
                ET.SubElement(joint, "child", link=name)
                ET.SubElement(joint, "origin", xyz=_vec(pos), rpy="0 0 0")
        for site in body.findall("site"):
            _check_no_rotation(site)
            ET.SubElement(robot, "link", name=site.get("name"))
            joint = ET.SubElement(robot, "joint", name=f"{site.get('name')}_fixed", type="fixed")
            ET.SubElement(joint, "parent", link=name)
            ET.SubElement(joint, "child", link=site.get("name"))
            ET.SubElement(joint, "origin", xyz=_vec(_floats(site.get("pos"), 3)), rpy="0 0 0")
        for child in body.findall("body"):
            visit(child, name)

    visit(root_body, None)
    missing = [j for j in list(actuated) + list(mimic) if j not in joints_seen]
    if missing:
        raise ValueError(f"joints of the hand model missing from its body tree: {missing}")
    for jname, (src, _, _) in mimic.items():
        if src not in actuated:
            raise ValueError(f"mimic joint {jname} follows {src}, which is not an actuated joint")

    ET.indent(robot, space="  ")
    header = ("<?xml version=\"1.0\"?>\n"
              "<!-- GENERATED by teleop/inspire_urdf.py from the simulated hand model (hardware/sim/scene.py);\n"
              "     do not edit: run `python -m teleop.inspire_urdf` to regenerate.\n"
              "     Actuated joints in Inspire DoF order (pinky, ring, middle, index, thumb_bend, thumb_rotation): "
              f"{', '.join(HAND_ACTUATED_JOINTS)}.\n"
              "     Angle at 1000 (open) = 0 rad, at 0 (closed) = the joint's upper limit. -->\n")
    return header + ET.tostring(robot, encoding="unicode") + "\n"


def write_urdf(path: str | Path = URDF_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generate_urdf(), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(URDF_PATH), help="where to write the URDF (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="only check that the file matches the hand model")
    args = ap.parse_args(argv)
    if args.check:
        out = Path(args.out)
        if not out.is_file() or out.read_text(encoding="utf-8") != generate_urdf():
            print(f"{out} is out of date: run python -m teleop.inspire_urdf", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    print(write_urdf(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
