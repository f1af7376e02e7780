"""The one source of truth for the JALA node graph (plain Python, no ROS imports).

``build_graph(GraphArgs(task=..., sim=...))`` returns the node specs (package, executable, name, namespace,
parameters, remappings). The launch files turn them into ``launch_ros.actions.Node`` actions
(``launch_node_kwargs``); the runner (``jala_bringup.run``) turns the same specs into subprocess command lines
(``command_line``) with a ``--params-file``. Parameters come from the node config dataclasses' defaults
(``jala_ros.parameters``) < ``config/common.yaml`` < ``config/<task>.yaml`` < the arguments; the arguments
(``GraphArgs``' fields other than task / sim / overrides) are generated from those dataclasses
(``jala_bringup.arguments``).

Simulation: ONE ``sim_devices`` process holds the SimWorld and the camera, arm and hand nodes (they share its
physics); real robot: one process per device (``camera_node`` per camera, ``arm_node``, ``hand_node``).
Both: ``policy_node`` and ``supervisor_node``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jala_ros.parameters import NODE_CONFIGS, SIM_PREFIXES, check_known, defaults_of, names_of

from .arguments import ROLE_EXECUTABLES, given_parameters, graph_arguments

TASKS = ("water_plant", "put_three_obj", "wipe_board")
PACKAGE = "jala_ros"
NAMESPACE = "/jala"
ROLES = ("sim_devices", "camera", "arm", "hand", "policy", "supervisor", "recorder", "teleop")


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


# Sections of config/*.yaml whose keys are node parameters: the fields of the role's node config dataclass.
_NODE_SECTIONS = {role: names_of(NODE_CONFIGS[ROLE_EXECUTABLES[role]])
                  for role in ("arm", "hand", "camera", "policy", "supervisor", "recorder", "teleop")}
_TOP_KEYS = {"namespace", "task", "instruction", "cameras", "sim", *_NODE_SECTIONS}
# sim_devices parameters the graph computes from the task and its cameras (not set in the YAML)
_SIM_COMPUTED = {"task", "camera_names", "sim_cameras", "image_topics", "info_topics"}
_SIM_WORLD_KEYS = {n for n in names_of(NODE_CONFIGS["sim_devices"]) - _SIM_COMPUTED
                   if not n.startswith(tuple(SIM_PREFIXES))}
_SIM_KEYS = _SIM_WORLD_KEYS | {"arm", "hand", "policy", "supervisor"}
_CAMERA_ENTRY_KEYS = {"name", "sim_camera", "serial"}  # serial: the camera node's parameter of that name


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
class _GraphArgsBase:
    task: str
    sim: bool = True
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> extra parameters

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; tasks: {', '.join(TASKS)}")
        for a in graph_arguments():
            setattr(self, a.name, a.check(getattr(self, a.name)))


def make_graph_args_class() -> type:
    """GraphArgs: task, sim, overrides, and one field per launch argument / runner option of the node config
    dataclasses (``jala_bringup.arguments``), default None = not given (task config, else the field's default)."""
    fields = [(a.name, Any, field(default=None)) for a in graph_arguments()]
    cls = dataclasses.make_dataclass("GraphArgs", fields, bases=(_GraphArgsBase,))
    cls.__module__ = __name__
    cls.__doc__ = ("What a graph is built from: task, sim, overrides (role -> extra node parameters) and the "
                   "arguments " + ", ".join(f[0] for f in fields) + " (None = not given).")
    return cls


GraphArgs = make_graph_args_class()


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


def _typed(role: str, params: dict[str, Any]) -> dict[str, Any]:
    """An int given for a float parameter (``camera_fps: 15`` in YAML) becomes a float: the ROS parameter's type
    is that of the value it is declared with."""
    fields = {f.name: f for f in dataclasses.fields(NODE_CONFIGS[ROLE_EXECUTABLES[role]])}
    out = {}
    for k, v in params.items():
        f = fields.get(k)
        if f is not None and isinstance(v, int) and not isinstance(v, bool) and \
                isinstance(f.default, float):
            v = float(v)
        out[k] = v
    return out


def build_graph(args: GraphArgs) -> list[NodeSpec]:
    cfg = load_task_config(args.task)
    ns = cfg.get("namespace", NAMESPACE)
    cams = cfg["cameras"]
    names = [c["name"] for c in cams]
    topics = [camera_topics(n) for n in names]
    image_topics = [t[0] for t in topics]
    info_topics = [t[1] for t in topics]
    sim = dict(cfg.get("sim", {}) or {}) if args.sim else {}
    specs: list[NodeSpec] = []

    def section(role: str) -> dict:
        """The role's YAML section, with its sim: overrides in simulation."""
        return {**(cfg.get(role) or {}), **(sim.get(role) or {})}

    def add(role: str, name: str | None, params: dict) -> None:
        params = _typed(role, {**params, **args.overrides.get(role, {})})
        specs.append(NodeSpec(role, PACKAGE, ROLE_EXECUTABLES[role], name, ns, params))

    if args.sim:
        params = {
            "task": args.task,
            **{k: v for k, v in sim.items() if k in _SIM_WORLD_KEYS},
            "camera_names": names,
            "sim_cameras": [c.get("sim_camera", "") or "" for c in cams],
            "image_topics": image_topics,
            "info_topics": info_topics,
            # the arm and hand nodes inside sim_devices take these (prefix stripped)
            **{f"{prefix}{k}": v for prefix in SIM_PREFIXES for k, v in section(prefix[:-1]).items()},
            **given_parameters(args, "sim_devices"),
        }
        add("sim_devices", None, params)
    else:
        serials = getattr(args, "camera_serials", None)
        if serials is not None and len(serials) != len(cams):
            raise ValueError(f"{args.task} uses {len(cams)} camera(s) {names}; got {len(serials)} serial(s)")
        for i, (cam, (img, info)) in enumerate(zip(cams, topics)):
            params = {**section("camera"), "camera_name": cam["name"], "image_topic": img, "info_topic": info,
                      "frame_id": f"{cam['name']}_color_optical_frame", "serial": cam.get("serial", "") or "",
                      **given_parameters(args, "camera", camera_index=i)}
            add("camera", f"camera_{cam['name']}", params)
        arm = {**section("arm"), **given_parameters(args, "arm")}
        if not {**arm, **args.overrides.get("arm", {})}.get("robot_ip"):
            raise ValueError("the real robot needs robot_ip (the FR3 controller's address)")
        add("arm", "arm", arm)
        add("hand", "hand", {**section("hand"), **given_parameters(args, "hand")})

    recorder = given_parameters(args, "recorder")
    recording = bool(recorder.get("episodes") or recorder.get("dataset"))
    if not recording:  # recording demonstrations: the operator drives, no policy runs
        policy = {**section("policy"), "image_topics": image_topics,
                  **({"instruction": cfg["instruction"]} if cfg.get("instruction") else {}),
                  **given_parameters(args, "policy")}
        add("policy", "policy", policy)
    add("supervisor", "supervisor", {**section("supervisor"), "camera_info_topics": info_topics,
                                     **given_parameters(args, "supervisor")})
    if recording:
        if not recorder.get("dataset"):
            raise ValueError("recording needs dataset (the LeRobot dataset folder): --dataset DIR / dataset:=DIR")
        rec = {**section("recorder"), "camera_names": names, "image_topics": image_topics, **recorder}
        if cfg.get("instruction"):
            rec.setdefault("instruction", cfg["instruction"])
        if args.sim:  # record what the simulated cameras render
            rec.setdefault("image_width", specs[0].parameters.get("render_width", defaults_of(
                NODE_CONFIGS["sim_devices"])["render_width"]))
            rec.setdefault("image_height", specs[0].parameters.get("render_height", defaults_of(
                NODE_CONFIGS["sim_devices"])["render_height"]))
        add("recorder", "recorder", rec)
        teleop = {**section("teleop"), **given_parameters(args, "teleop")}
        source = teleop.get("source") or ("expert" if args.sim else "keyboard")
        if source == "expert":  # the simulated world's scripted expert: inside sim_devices, next to the world
            if not args.sim:
                raise ValueError("the expert operator exists only in the simulated world (--sim / sim:=true)")
            specs[0].parameters["operator"] = "expert"
            options = {k: v for k, v in teleop.items() if k != "source"}
            if options:
                specs[0].parameters["operator_options"] = json.dumps(options)
        else:
            add("teleop", "teleop", {**teleop, "source": source})
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
