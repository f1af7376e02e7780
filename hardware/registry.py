"""Which device models the runtime can drive: one registration per (role, kind).

A registration (``DeviceKind``) names a device model and says how to make it::

    role       "arm" | "hand" | "camera"
    name       the kind, e.g. "franka_fr3"; what a node's ``device_kind`` parameter selects
    config     the driver's config dataclass; its field names are the device's parameter names
    factory    factory(config) -> the device (an Arm / Hand / Camera); imports the driver module when called
    probe      optional, for ``jala-hardware-check``: probe(targets, timeout_s) -> [ProbeResult], with every
               configured device of this kind in ``targets`` (``hardware.probes.ProbeTarget``), so a probe can
               share one SDK load or bus scan between them
    probe_options  optional dataclass of probe-only settings that a check config section may carry besides the
               config fields (e.g. the FR3's libfranka command port); its fields must not clash with the config's

Registering (next to the driver, in ``hardware/<driver>/registration.py``)::

    @register("arm", "franka_fr3", FrankaArmConfig, probe=probe_fr3)
    def make_franka_fr3(config):
        from hardware.franka.arm import FrankaArm  # franky is imported only when a device is made
        return FrankaArm(config)

Using::

    spec = get("arm", "franka_fr3")            # ValueError naming the known kinds when there is none
    arm = spec.make(build_config(spec, {"robot_ip": "172.16.0.2"}, '{"relative_dynamics_factor": 0.3}'))

The built-in registrations are found lazily, on the first ``get`` / ``kinds`` / ``specs``: every
``hardware/<package>/registration.py`` is imported (only those modules: driver modules stay unimported). So a
second arm model is one new folder ``hardware/<model>/`` holding its driver, config and ``registration.py``.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ROLES = ("arm", "hand", "camera")
REGISTRATION_MODULE = "registration"  # hardware/<package>/registration.py holds a package's registrations


class UnknownDeviceKind(ValueError):
    """No device of that kind is registered for the role. The message names the kinds there are."""


@dataclass(frozen=True)
class DeviceKind:
    """One registered device model (see the module docs)."""

    role: str
    name: str
    config: type
    factory: Callable[[Any], Any]
    probe: Callable[..., list] | None = None
    probe_options: type | None = None
    description: str = ""

    @property
    def config_fields(self) -> tuple[str, ...]:
        """The parameter names this kind takes: its config dataclass's field names."""
        return config_fields(self.config)

    def make(self, config=None):
        """The device, from ``config`` (an instance of ``self.config``; its defaults when None). Not connected."""
        if config is None:
            config = self.config()
        if not isinstance(config, self.config):
            raise TypeError(f"{self.role} kind {self.name!r} needs a {self.config.__name__}, "
                            f"got {type(config).__name__}")
        return self.factory(config)


_lock = threading.RLock()
_registry: dict[str, dict[str, DeviceKind]] = {role: {} for role in ROLES}
# The registration modules are imported under their own lock, never under _lock: a thread importing one directly
# (holding Python's module lock) must be able to register() while another thread loads the built-ins.
_load_lock = threading.RLock()
_load_state = "no"  # "no" -> "loading" -> "done"
_load_errors: dict[str, str] = {}  # registration module -> why it could not be imported


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown device role {role!r}; roles: {list(ROLES)}")


def register(role: str, name: str, config: type, factory: Callable[[Any], Any] | None = None, *,
             probe: Callable[..., list] | None = None, probe_options: type | None = None,
             description: str = "", replace: bool = False):
    """Register the device kind ``name`` for ``role``. With ``factory`` given, registers it and returns the
    ``DeviceKind``; without, returns a decorator for the factory (which it returns unchanged). Registering a
    name twice is a ValueError unless ``replace``."""
    _check_role(role)
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"a device kind needs a non-empty name without surrounding spaces, got {name!r}")
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise TypeError(f"{role} kind {name!r}: config must be a dataclass type, got {config!r}")
    if probe_options is not None:
        if not (isinstance(probe_options, type) and dataclasses.is_dataclass(probe_options)):
            raise TypeError(f"{role} kind {name!r}: probe_options must be a dataclass type, got {probe_options!r}")
        clash = sorted(set(config_fields(probe_options)) & set(config_fields(config)))
        if clash:
            raise ValueError(f"{role} kind {name!r}: probe option(s) {clash} clash with {config.__name__} fields")

    def add(fn: Callable[[Any], Any]) -> DeviceKind:
        if not callable(fn):
            raise TypeError(f"{role} kind {name!r}: factory must be callable, got {fn!r}")
        spec = DeviceKind(role, name, config, fn, probe, probe_options, description)
        with _lock:
            existing = _registry[role].get(name)
            same = existing is not None and (existing.factory.__module__, existing.factory.__qualname__) == (
                fn.__module__, fn.__qualname__)  # the same module imported again (e.g. reloaded)
            if existing is not None and not replace and not same:
                raise ValueError(f"{role} kind {name!r} is already registered (by {existing.factory.__module__}); "
                                 f"pass replace=True to override it")
            _registry[role][name] = spec
        return spec

    if factory is not None:
        return add(factory)

    def decorator(fn):
        add(fn)
        return fn

    return decorator


def unregister(role: str, name: str) -> None:
    """Remove a registration (tests, plug-ins); nothing happens when there is none."""
    _check_role(role)
    with _lock:
        _registry[role].pop(name, None)


def load_builtins() -> None:
    """Import every ``hardware/<package>/registration.py`` once (the built-in registrations)."""
    global _load_state
    if _load_state == "done":
        return
    with _load_lock:
        if _load_state != "no":  # done meanwhile, or this thread is loading (a registration module looking up kinds)
            return
        _load_state = "loading"
        try:
            here = os.path.dirname(os.path.abspath(__file__))
            for entry in sorted(os.listdir(here)):
                if os.path.isfile(os.path.join(here, entry, "__init__.py")) and \
                        os.path.isfile(os.path.join(here, entry, f"{REGISTRATION_MODULE}.py")):
                    module = f"{__package__}.{entry}.{REGISTRATION_MODULE}"
                    try:
                        importlib.import_module(module)
                    except Exception as exc:  # noqa: BLE001 - reported with every lookup that misses
                        _load_errors[module] = f"{type(exc).__name__}: {exc}"
                        log.warning("device registrations in %s could not be loaded: %s", module,
                                    _load_errors[module])
        finally:
            _load_state = "done"


def get(role: str, kind: str) -> DeviceKind:
    """The registration of ``kind`` for ``role``; UnknownDeviceKind (a ValueError) naming the known kinds."""
    _check_role(role)
    load_builtins()
    with _lock:
        spec = _registry[role].get(kind)
        if spec is None:
            broken = f" (registration modules that failed to import: {_load_errors})" if _load_errors else ""
            raise UnknownDeviceKind(f"no {role} kind {kind!r} is registered; known {role} kinds: "
                                    f"{sorted(_registry[role])}{broken}")
        return spec


def kinds(role: str) -> tuple[str, ...]:
    """Names of the kinds registered for ``role``, sorted."""
    _check_role(role)
    load_builtins()
    with _lock:
        return tuple(sorted(_registry[role]))


def specs(role: str | None = None) -> tuple[DeviceKind, ...]:
    """Every registration (of ``role``, or of all roles), in role then name order."""
    roles = ROLES if role is None else (role,)
    for r in roles:
        _check_role(r)
    load_builtins()
    with _lock:
        return tuple(_registry[r][n] for r in roles for n in sorted(_registry[r]))


# ---------------------------------------------------------------------------------------------- configs
def config_fields(config_cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.init)


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _as_dict(extra: str | Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    if extra is None:
        return {}
    if isinstance(extra, str):
        if not extra.strip():
            return {}
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{what}: extra options are not valid JSON ({exc}): {extra!r}") from None
    if not isinstance(extra, Mapping):
        raise ValueError(f"{what}: extra options must be a JSON object (mapping), got {type(extra).__name__}")
    return dict(extra)


def build_config(spec: DeviceKind | type, params: Mapping[str, Any] | None = None,
                 extra: str | Mapping[str, Any] | None = None):
    """The config dataclass of ``spec`` (a DeviceKind, or a config dataclass itself) from ``params`` and ``extra``.

    Keys are exactly the dataclass's field names; there are no aliases. ``extra`` (a JSON object text, e.g. a
    ROS string parameter, or a dict) adds or overrides fields. A key that is not a field, in either, is a
    ValueError naming it and the fields there are. ``None`` and empty strings mean unset (the field keeps its
    default). The dataclass validates the values itself."""
    config_cls = spec.config if isinstance(spec, DeviceKind) else spec
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise TypeError(f"build_config needs a DeviceKind or a config dataclass, got {spec!r}")
    what = config_cls.__name__ + (f" ({spec.role} kind {spec.name!r})" if isinstance(spec, DeviceKind) else "")
    fields = config_fields(config_cls)
    kwargs: dict[str, Any] = {}
    for source, values in (("parameter", dict(params or {})), ("extra option", _as_dict(extra, what))):
        unknown = sorted(k for k in values if k not in fields)
        if unknown:
            raise ValueError(f"{what} has no option(s) {unknown} (given as {source}s); its options: {list(fields)}")
        kwargs.update({k: v for k, v in values.items() if not _unset(v)})
    return config_cls(**kwargs)
