"""The one source of truth for the JALA node graph (plain Python, no ROS imports).

``build_graph(GraphArgs(task=..., sim=...))`` returns the node specs (package, executable, name, namespace,
parameters, remappings). The launch files turn them into ``launch_ros.actions.Node`` actions
(``launch_node_kwargs``); the runner (``jala_bringup.run``) turns the same specs into subprocess command lines
(``command_line``) with a ``--params-file``. Parameters come from ``config/common.yaml`` < ``config/<task>.yaml``
< the arguments.

Simulation: ONE ``sim_devices`` process holds the SimWorld and the camera, arm and hand nodes (they share its
physics); real robot: one process per device (``camera_node`` per camera, ``arm_node``, ``hand_node``).
Both: ``policy_node`` and ``supervisor_node``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jala_ros.parameters import (ARM_DEFAULTS, CAMERA_DEFAULTS, HAND_DEFAULTS, POLICY_DEFAULTS, SUPERVISOR_DEFAULTS,
                                 check_known)

TASKS = ("water_plant", "put_three_obj", "wipe_board")
PACKAGE = "jala_ros"
NAMESPACE = "/jala"
ROLES = ("sim_devices", "camera", "arm", "hand", "policy", "supervisor")


def config_dir() -> Path:
    """``config/`` of jala_bringup: next to the package sources, else the installed share directory."""
    here = Path(__file__).resolve().parent.parent / "config"
    if (here / "common.yaml").exists():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("jala_bringup")) / "config"
        if (share / "common.yaml").exists():
            return share
    except Exception:  # noqa: BLE001 - not installed with colcon
        pass
    raise FileNotFoundError("jala_bringup config/ not found next to the sources nor in the ament share directory")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class ConfigError(ValueError):
    """A task configuration (config/*.yaml) that cannot be used: unknown key, wrong shape."""


# Sections of config/*.yaml whose keys are node parameters, and the node defaults they must match.
_NODE_SECTIONS = {"arm": ARM_DEFAULTS, "hand": HAND_DEFAULTS, "camera": CAMERA_DEFAULTS, "policy": POLICY_DEFAULTS,
                  "supervisor": SUPERVISOR_DEFAULTS}
_TOP_KEYS = {"namespace", "task", "instruction", "cameras", "sim", *_NODE_SECTIONS}
_SIM_KEYS = {"variant", "seed", "render_width", "render_height", "camera_fps", "world_options", "arm", "hand",
             "policy", "supervisor"}
_CAMERA_ENTRY_KEYS = {"name", "sim_camera", "serial"}


def check_task_config(cfg: dict, where: str) -> None:
    """ConfigError naming the first unknown key (with its section) and the allowed ones: a typo such as
    ``supervisor.camera_timout_ms`` must not leave a safety timeout at its default unnoticed."""
    def known(section: dict, allowed, path: str) -> None:
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: {path or 'the file'} must be a mapping, got {section!r}")
        try:
            check_known(section, allowed, f"{where}: {path or 'top level'}")
        except ValueError as exc:
            raise ConfigError(str(exc).replace("parameter(s)", "key(s)")) from None

    known(cfg, _TOP_KEYS, "")
    for name, defaults in _NODE_SECTIONS.items():
        known(cfg.get(name, {}) or {}, defaults, name)
    sim = cfg.get("sim", {}) or {}
    known(sim, _SIM_KEYS, "sim")
    for name in ("arm", "hand", "policy", "supervisor"):
        known(sim.get(name, {}) or {}, _NODE_SECTIONS[name], f"sim.{name}")
    for i, cam in enumerate(cfg.get("cameras") or []):
        known(cam, _CAMERA_ENTRY_KEYS, f"cameras[{i}]")


def load_task_config(task: str) -> dict:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    d = config_dir()
    parts = []
    for f in (d / "common.yaml", d / f"{task}.yaml"):
        try:
            part = yaml.safe_load(f.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{f}: not valid YAML: {exc}") from None
        check_task_config(part, str(f))
        parts.append(part)
    cfg = _merge(*parts)
    if not cfg.get("cameras"):
        raise ConfigError(f"{task}.yaml lists no cameras")
    return cfg


def camera_topics(camera_name: str) -> tuple[str, str]:
    """realsense-ros naming: /camera/<camera_name>/color/{image_raw,camera_info}."""
    base = f"/camera/{camera_name}/color"
    return f"{base}/image_raw", f"{base}/camera_info"


@dataclass
class GraphArgs:
    task: str
    sim: bool = True
    checkpoint: str = ""
    device: str = ""  # '' = config (auto)
    instruction: str = ""  # '' = the task's
    autostart: bool = False
    seed: int | None = None  # sim world seed
    variant: str = ""  # sim world variant ('' = config)
    robot_ip: str = ""
    hand_transport: str = "tcp"
    hand_host: str = "127.0.0.1"
    hand_port: int = 6000
    hand_serial_port: str = "/dev/ttyUSB0"
    camera_serials: tuple[str, ...] = ()
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> extra parameters

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; tasks: {', '.join(TASKS)}")
        if isinstance(self.camera_serials, str):
            self.camera_serials = tuple(s.strip() for s in self.camera_serials.split(",") if s.strip())
        self.camera_serials = tuple(self.camera_serials)
        if self.hand_transport not in ("tcp", "rtu"):
            raise ValueError(f"hand_transport must be tcp or rtu, got {self.hand_transport!r}")
        if not self.sim and not self.robot_ip:
            raise ValueError("the real robot needs robot_ip (the FR3 controller's address)")


@dataclass(frozen=True)
class NodeSpec:
    role: str
    package: str
    executable: str
    name: str | None  # None: the process holds several nodes that keep their own names
    namespace: str
    parameters: dict[str, Any]
    remappings: tuple[tuple[str, str], ...] = ()

    @property
    def module(self) -> str:
        """Python module whose ``main()`` the console script ``executable`` runs."""
        return f"{self.package}.{self.executable}"


def _check_param(name: str, value: Any) -> None:
    ok_scalar = (bool, int, float, str)
    if isinstance(value, list):
        if not value:
            raise ValueError(f"parameter {name}: empty lists have no ROS type; leave the parameter out instead")
        kinds = {type(v) for v in value}
        if len(kinds) != 1 or not isinstance(value[0], ok_scalar):
            raise ValueError(f"parameter {name}: lists must hold one scalar type, got {value}")
    elif not isinstance(value, ok_scalar):
        raise ValueError(f"parameter {name}: {value!r} is not a ROS parameter value")


def build_graph(args: GraphArgs) -> list[NodeSpec]:
    cfg = load_task_config(args.task)
    ns = cfg.get("namespace", NAMESPACE)
    cams = cfg["cameras"]
    names = [c["name"] for c in cams]
    topics = [camera_topics(n) for n in names]
    image_topics = [t[0] for t in topics]
    info_topics = [t[1] for t in topics]
    specs: list[NodeSpec] = []

    def extra(role: str) -> dict:
        return dict(args.overrides.get(role, {}))

    if args.sim:
        sim = dict(cfg.get("sim", {}))
        params = {
            "task": args.task,
            "variant": args.variant or sim.get("variant", "seen"),
            "seed": int(sim.get("seed", 0) if args.seed is None else args.seed),
            "render_width": int(sim.get("render_width", 320)),
            "render_height": int(sim.get("render_height", 240)),
            "camera_fps": float(sim.get("camera_fps", 30.0)),
            "camera_names": names,
            "sim_cameras": [c.get("sim_camera", "") or "" for c in cams],
            "image_topics": image_topics,
            "info_topics": info_topics,
            # the arm and hand nodes inside sim_devices take these (prefix stripped)
            **{f"arm_{k}": v for k, v in {**cfg["arm"], **sim.get("arm", {})}.items()},
            **{f"hand_{k}": v for k, v in {**cfg["hand"], **sim.get("hand", {})}.items()},
        }
        params.update(extra("sim_devices"))
        specs.append(NodeSpec("sim_devices", PACKAGE, "sim_devices", None, ns, params))
    else:
        serials = list(args.camera_serials) or [c.get("serial", "") or "" for c in cams]
        if len(serials) != len(cams):
            raise ValueError(f"{args.task} uses {len(cams)} camera(s) {names}; got {len(serials)} serial(s)")
        for cam, serial, (img, info) in zip(cams, serials, topics):
            params = {"camera_name": cam["name"], "image_topic": img, "info_topic": info,
                      "frame_id": f"{cam['name']}_color_optical_frame", "serial": serial,
                      **{k: cfg["camera"][k] for k in ("width", "height", "fps", "read_timeout_s")}}
            params.update(extra("camera"))
            specs.append(NodeSpec("camera", PACKAGE, "camera_node", f"camera_{cam['name']}", ns, params))
        arm = {**cfg["arm"], "robot_ip": args.robot_ip, **extra("arm")}
        specs.append(NodeSpec("arm", PACKAGE, "arm_node", "arm", ns, arm))
        hand = {**cfg["hand"], "transport": args.hand_transport, "hand_host": args.hand_host,
                "hand_port": int(args.hand_port), "serial_port": args.hand_serial_port, **extra("hand")}
        specs.append(NodeSpec("hand", PACKAGE, "hand_node", "hand", ns, hand))

    policy = {**cfg["policy"], **(cfg.get("sim", {}).get("policy", {}) if args.sim else {}),
              "checkpoint": args.checkpoint, "image_topics": image_topics,
              "instruction": args.instruction or cfg.get("instruction", ""), "autostart": bool(args.autostart)}
    if args.device:
        policy["device"] = args.device
    policy.update(extra("policy"))
    specs.append(NodeSpec("policy", PACKAGE, "policy_node", "policy", ns, policy))
    sup = {**cfg["supervisor"], **(cfg.get("sim", {}).get("supervisor", {}) if args.sim else {}),
           "camera_info_topics": info_topics, **extra("supervisor")}
    specs.append(NodeSpec("supervisor", PACKAGE, "supervisor_node", "supervisor", ns, sup))
    for s in specs:
        for k, v in s.parameters.items():
            _check_param(f"{s.role}.{k}", v)
    return specs


# ------------------------------------------------------------------------------------ the two consumers
def enclave(spec: NodeSpec, enclave_root: str) -> str:
    """The SROS2 enclave of a spec's process: ``<enclave_root>/<node name or executable>``."""
    return f"{enclave_root.rstrip('/')}/{spec.name or spec.executable}"


def launch_node_kwargs(spec: NodeSpec, enclave_root: str = "") -> dict[str, Any]:
    """Keyword arguments for ``launch_ros.actions.Node`` (a process holding several nodes gets no ``name``:
    launch_ros would rename every node in it). ``enclave_root``: SROS2, one enclave per process."""
    kw: dict[str, Any] = {"package": spec.package, "executable": spec.executable, "namespace": spec.namespace,
                          "parameters": [dict(spec.parameters)], "remappings": list(spec.remappings),
                          "output": "screen", "emulate_tty": True}
    if spec.name is not None:
        kw["name"] = spec.name
    if enclave_root:
        kw["ros_arguments"] = ["--enclave", enclave(spec, enclave_root)]
    return kw


def params_file_content(spec: NodeSpec) -> dict:
    """The ``--params-file`` content for a spec: like launch_ros does for dict parameters, the values apply to
    every node of the process (``/**``); each node declares only its own names."""
    return {"/**": {"ros__parameters": dict(spec.parameters)}}


def ros_args(spec: NodeSpec, params_file: str) -> list[str]:
    out = ["--ros-args"]
    if spec.name is not None:
        out += ["-r", f"__node:={spec.name}"]
    out += ["-r", f"__ns:={spec.namespace}"]
    for src, dst in spec.remappings:
        out += ["-r", f"{src}:={dst}"]
    out += ["--params-file", params_file]
    return out


def command_line(spec: NodeSpec, params_file: str, python: str) -> list[str]:
    """How the runner starts a spec without ``ros2 run``: ``python -m jala_ros.<executable> --ros-args ...``
    (the console script ``<executable>`` of the installed package runs the same ``main``)."""
    return [python, "-m", spec.module, *ros_args(spec, params_file)]


def parse_command_line(cmd: list[str]) -> dict[str, Any]:
    """Inverse of ``command_line`` (for checks): module, name, namespace, remappings, params file path."""
    out: dict[str, Any] = {"module": cmd[cmd.index("-m") + 1], "name": None, "namespace": None, "remappings": [],
                           "params_file": None}
    i = cmd.index("--ros-args") + 1
    while i < len(cmd):
        if cmd[i] == "-r":
            src, dst = cmd[i + 1].split(":=", 1)
            if src == "__node":
                out["name"] = dst
            elif src == "__ns":
                out["namespace"] = dst
            else:
                out["remappings"].append((src, dst))
            i += 2
        elif cmd[i] == "--params-file":
            out["params_file"] = cmd[i + 1]
            i += 2
        else:
            raise ValueError(f"unexpected argument {cmd[i]!r}")
    return out
