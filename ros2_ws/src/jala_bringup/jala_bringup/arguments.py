"""Launch arguments and runner options generated from the node config dataclasses (plain Python, no ROS imports).

A launch argument / runner option is declared ONCE, as field metadata on the node parameter it sets
(``jala_ros.parameters``: ``param(..., arg="hand_host")`` on ``HandNodeConfig.host``). From that:

- ``GraphArgs`` (``jala_bringup.graph``) gets a field ``hand_host`` (None = not given);
- ``launch_arguments()`` gives the launch files' ``DeclareLaunchArgument``s (``hand_host:=...``);
- ``add_cli_options(parser)`` gives the runner's argparse options (``--hand-host``);
- ``given_parameters(args, role)`` gives the node parameters the arguments set (``{"host": ...}`` for the hand).

An argument that is not given ('' on the launch command line, None in GraphArgs) leaves the parameter to the task
configuration (config/common.yaml < config/<task>.yaml), else to the field's default.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from jala_ros.parameters import NODE_CONFIGS, default_of

# graph role -> executable whose config dataclass holds the role's parameters
# (in the order their arguments are listed)
ROLE_EXECUTABLES = {"policy": "policy_node", "sim_devices": "sim_devices", "arm": "arm_node", "hand": "hand_node",
                    "recorder": "recorder_node", "teleop": "teleop_node",
                    "camera": "camera_node", "supervisor": "supervisor_node"}


@dataclass(frozen=True)
class GraphArgument:
    """One launch argument / runner option and the node parameter it sets."""

    name: str  # launch argument name; the runner option is --<name with dashes>
    role: str  # the graph role whose node parameter it sets
    field: str  # the node config field (= ROS parameter name)
    default: Any  # the field's default
    help: str
    choices: tuple | None = None
    per_camera: bool = False  # comma-separated, one value per camera of the task
    cli: bool = True  # also a runner option

    @property
    def kind(self) -> type:
        return str if self.per_camera else type(self.default)

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text: str | None) -> Any:
        """A launch argument string -> the value (None: not given, i.e. '')."""
        if text is None or text == "":
            return None
        if self.per_camera:
            return tuple(s.strip() for s in text.split(","))
        if self.kind is bool:
            return truthy(text)
        return self.kind(text)

    def check(self, value: Any) -> Any:
        """A GraphArgs value normalized (None / '' = not given); ValueError when it is not allowed."""
        if value is None or value == "":
            return None
        if self.per_camera:
            value = tuple(s.strip() for s in value.split(",")) if isinstance(value, str) else tuple(value)
            return value or None
        if isinstance(value, str) and self.kind is not str:
            value = self.parse(value)  # '502' for the port, 'true' for a flag
        elif self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.choices and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        return value


def truthy(text: str) -> bool:
    t = str(text).strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def graph_arguments() -> list[GraphArgument]:
    """Every node field that a launch argument / runner option sets, read from the dataclasses now."""
    out: list[GraphArgument] = []
    for role, exe in ROLE_EXECUTABLES.items():
        for f in dataclasses.fields(NODE_CONFIGS[exe]):
            m = f.metadata
            if m.get("arg"):
                out.append(GraphArgument(name=m["arg"], role=role, field=f.name, default=default_of(f),
                                         help=m.get("arg_help") or m["help"], choices=m.get("choices"),
                                         per_camera=bool(m.get("per_camera")), cli=bool(m.get("cli", True))))
    names = [a.name for a in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise RuntimeError(f"launch argument(s) {sorted(dup)} declared on more than one node field")
    return out


def argument(name: str) -> GraphArgument:
    return next(a for a in graph_arguments() if a.name == name)


def describe(a: GraphArgument) -> str:
    """The argument's help: what it sets and its effective default."""
    return f"{a.help} [{ROLE_EXECUTABLES[a.role]} parameter {a.field}; not given: the task config, else {a.default!r}]"


def launch_arguments() -> dict[str, tuple[str, str]]:
    """{launch argument: (default, description)} of the node-parameter arguments ('' = not given)."""
    return {a.name: ("", describe(a)) for a in graph_arguments()}


def add_cli_options(parser: argparse.ArgumentParser, notes: dict[str, str] | None = None) -> list[GraphArgument]:
    """The runner options of the node-parameter arguments (default None = not given; ``notes``: argument name ->
    text appended to its help); returns the arguments."""
    added = []
    notes = notes or {}
    for a in graph_arguments():
        if not a.cli:
            continue
        help_text = describe(a) + (f"; {notes[a.name]}" if a.name in notes else "")
        kw: dict[str, Any] = {"dest": a.name, "default": None, "help": help_text}
        if a.kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = a.kind
            if a.choices:
                kw["choices"] = list(a.choices)
        parser.add_argument(a.option, **kw)
        added.append(a)
    return added


def given_parameters(args, role: str, camera_index: int | None = None) -> dict[str, Any]:
    """{node parameter: value} that the given arguments of ``args`` (a GraphArgs) set on ``role``'s node
    (``camera_index``: which camera's entry of a per-camera argument)."""
    out = {}
    for a in graph_arguments():
        value = getattr(args, a.name, None)
        if a.role != role or value is None:
            continue
        if a.per_camera:
            if camera_index is None:
                continue
            value = value[camera_index]
            if value == "":
                continue
        out[a.field] = value
    return out
