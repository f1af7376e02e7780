"""hardware.registry: device kinds registered by name, looked up per role, configs built from exact field names;
the built-in FR3 / Inspire / L515 registrations; and the ROS device factory on top (jala_ros.devices). No device
is contacted: devices are made, never connected."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from hardware import registry
from hardware.franka import FrankaArmConfig
from hardware.inspire import InspireHandConfig
from hardware.probes import ProbeResult, ProbeTarget
from hardware.realsense import RealSenseCameraConfig
from tests.helpers import ROOT, run_python


@dataclass
class ToyArmConfig:
    host: str = "10.0.0.1"
    speed: float = 0.5
    joints: tuple = field(default=(0.0,) * 7)

    def __post_init__(self):
        if not 0 < self.speed <= 1:
            raise ValueError(f"speed must be in (0, 1], got {self.speed}")


class ToyArm:
    def __init__(self, config: ToyArmConfig):
        self.config = config


@pytest.fixture
def toy_kind():
    spec = registry.register("arm", "toy_arm", ToyArmConfig, ToyArm, description="a test arm")
    yield spec
    registry.unregister("arm", "toy_arm")


def test_registering_a_kind_makes_it_available_by_name(toy_kind):
    assert "toy_arm" in registry.kinds("arm") and "franka_fr3" in registry.kinds("arm")
    assert "toy_arm" not in registry.kinds("hand")
    spec = registry.get("arm", "toy_arm")
    assert spec is toy_kind and (spec.role, spec.name, spec.config, spec.probe) == ("arm", "toy_arm", ToyArmConfig,
                                                                                     None)
    arm = spec.make(registry.build_config(spec, {"host": "10.1.2.3"}))
    assert isinstance(arm, ToyArm) and arm.config == ToyArmConfig(host="10.1.2.3")
    assert spec.make().config == ToyArmConfig()  # the config's defaults
    with pytest.raises(TypeError, match="needs a ToyArmConfig"):
        spec.make(FrankaArmConfig())
    assert spec in registry.specs("arm") and spec in registry.specs()


def test_the_decorator_form_and_duplicates():
    try:
        @registry.register("hand", "toy_hand", ToyArmConfig)
        def make_toy_hand(config):
            return ("toy hand", config.host)

        assert make_toy_hand.__name__ == "make_toy_hand"  # the decorator returns the factory unchanged
        assert registry.get("hand", "toy_hand").make() == ("toy hand", "10.0.0.1")
        with pytest.raises(ValueError, match="already registered"):
            registry.register("hand", "toy_hand", ToyArmConfig, lambda c: None)
        registry.register("hand", "toy_hand", ToyArmConfig, lambda c: "replaced", replace=True)
        assert registry.get("hand", "toy_hand").make() == "replaced"
    finally:
        registry.unregister("hand", "toy_hand")
    assert "toy_hand" not in registry.kinds("hand")
    with pytest.raises(ValueError, match="unknown device role 'gripper'; roles: \\['arm', 'hand', 'camera'\\]"):
        registry.register("gripper", "x", ToyArmConfig, ToyArm)
    with pytest.raises(TypeError, match="dataclass"):
        registry.register("arm", "x", dict, ToyArm)


def test_unknown_kind_is_a_clear_error_naming_the_known_kinds(toy_kind):
    with pytest.raises(registry.UnknownDeviceKind) as ei:
        registry.get("arm", "ur5e")
    msg = str(ei.value)
    assert "no arm kind 'ur5e'" in msg and "known arm kinds: ['franka_fr3', 'toy_arm']" in msg
    assert isinstance(ei.value, ValueError)
    with pytest.raises(ValueError, match="known camera kinds: \\['realsense_l515'\\]"):
        registry.get("camera", "franka_fr3")  # a kind of another role
    with pytest.raises(ValueError, match="unknown device role"):
        registry.kinds("gripper")


def test_build_config_takes_exact_field_names_and_refuses_unknown_keys(toy_kind):
    cfg = registry.build_config(toy_kind, {"host": "h", "speed": ""}, '{"speed": 0.25, "joints": [1, 2]}')
    assert cfg == ToyArmConfig(host="h", speed=0.25, joints=[1, 2])  # extra overrides, JSON verbatim
    cfg = registry.build_config(toy_kind, {"host": "", "speed": None}, {"host": "", "speed": 0.75})
    assert cfg == ToyArmConfig(speed=0.75)  # empty strings / None: unset, the default stays
    assert registry.build_config(toy_kind, {}, "") == registry.build_config(toy_kind, {}, None) == ToyArmConfig()
    with pytest.raises(ValueError) as ei:
        registry.build_config(toy_kind, {"host": "h"}, '{"warp": 9, "hostname": "x"}')
    msg = str(ei.value)
    assert "has no option(s) ['hostname', 'warp']" in msg and "given as extra options" in msg
    assert "'host', 'speed', 'joints'" in msg  # the fields there are
    with pytest.raises(ValueError, match=r"no option\(s\) \['ip'\] \(given as parameters\)"):
        registry.build_config(toy_kind, {"ip": "10.0.0.2"})  # no aliases: ip is not host
    with pytest.raises(ValueError, match="not valid JSON"):
        registry.build_config(toy_kind, {}, "{speed: 1}")
    with pytest.raises(ValueError, match="JSON object"):
        registry.build_config(toy_kind, {}, "[1, 2]")
    with pytest.raises(ValueError, match="speed must be in"):  # the dataclass validates the values
        registry.build_config(toy_kind, {"speed": 3.0})
    # a config dataclass works in place of a registration
    assert registry.build_config(ToyArmConfig, {"speed": 1.0}).speed == 1.0


def test_the_builtins_are_registered_with_their_driver_configs():
    expected = {("arm", "franka_fr3"): FrankaArmConfig, ("hand", "inspire_rh56"): InspireHandConfig,
                ("camera", "realsense_l515"): RealSenseCameraConfig}
    for (role, kind), config_cls in expected.items():
        spec = registry.get(role, kind)
        assert spec.config is config_cls and callable(spec.probe) and spec.description
        assert kind in registry.kinds(role)
    arm = registry.get("arm", "franka_fr3")
    assert registry.build_config(arm, {"robot_ip": "172.16.0.9"}, '{"relative_dynamics_factor": 0.3}') == \
        FrankaArmConfig(robot_ip="172.16.0.9", relative_dynamics_factor=0.3)
    assert registry.config_fields(arm.probe_options) == ("port", "franky")
    hand = registry.build_config(registry.get("hand", "inspire_rh56"), {"transport": "rtu", "serial_port": "/dev/x"})
    assert (hand.transport, hand.serial_port) == ("rtu", "/dev/x")


def test_inspire_defaults_come_from_the_embodiment():
    import embodiment

    cfg = InspireHandConfig()
    assert (cfg.port, cfg.baudrate, cfg.device_id) == (embodiment.INSPIRE_MODBUS_PORT, embodiment.INSPIRE_BAUDRATE,
                                                       embodiment.INSPIRE_DEVICE_ID)


def test_a_builtin_device_is_made_without_contacting_anything():
    hand = registry.get("hand", "inspire_rh56").make(InspireHandConfig(host="127.0.0.1", port=1))
    assert type(hand).__name__ == "InspireHand" and hand.config.port == 1


def test_a_custom_probe_runs_in_the_hardware_check(capsys, tmp_path):
    """A registered kind with a probe is checked by jala-hardware-check when a section names it."""
    from hardware.check import main

    seen = []

    def probe(targets, timeout):
        seen.extend(targets)
        return [ProbeResult(t.name, t.config.host, t.config.speed < 0.9, f"speed {t.config.speed}") for t in targets]

    registry.register("arm", "toy_arm", ToyArmConfig, ToyArm, probe=probe)
    try:
        assert main(["--robot-ip", "unused", "--arm-kind", "toy_arm"]) == 2  # robot_ip is no ToyArmConfig field
        assert "unknown keys in robot: ['robot_ip']" in capsys.readouterr().err
        cfg = tmp_path / "toy.yaml"
        cfg.write_text("robot: {kind: toy_arm, host: 10.9.9.9, speed: 0.5}\n")
        assert main(["--config", str(cfg)]) == 0
    finally:
        registry.unregister("arm", "toy_arm")
    out = capsys.readouterr().out
    assert re.search(r"^robot +10\.9\.9\.9 +OK +speed 0\.5$", out, re.M), out
    assert seen == [ProbeTarget("robot", ToyArmConfig(host="10.9.9.9", speed=0.5), None)]


def test_the_registry_imports_no_driver_sdk():
    """Looking kinds up and building configs imports neither franky nor pyrealsense2 (nor the FR3 driver)."""
    code = (
        "import sys\n"
        "from hardware import registry\n"
        "for role in registry.ROLES:\n"
        "    for kind in registry.kinds(role):\n"
        "        spec = registry.get(role, kind)\n"
        "        registry.build_config(spec, {})\n"
        "bad = [m for m in ('franky', 'pyrealsense2', 'hardware.franka.arm') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(sorted(registry.kinds('arm') + registry.kinds('hand') + registry.kinds('camera')))\n"
    )
    proc = run_python(code)
    assert "['franka_fr3', 'inspire_rh56', 'realsense_l515']" in proc.stdout


def test_ros_device_factory_makes_devices_through_the_registry(toy_kind, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "ros2_ws" / "src" / "jala_ros"))
    from jala_ros import devices

    arm = devices.make_device("arm", "toy_arm", {"host": "10.2.2.2", "speed": ""}, '{"speed": 0.2}')
    assert isinstance(arm, ToyArm) and arm.config == ToyArmConfig(host="10.2.2.2", speed=0.2)
    hand = devices.make_device("hand", "", {"transport": "rtu", "host": "", "port": None, "serial_port": "/dev/ttyUSB3"},
                                  '{"device_id": 2}')
    assert (hand.config.transport, hand.config.serial_port, hand.config.device_id) == ("rtu", "/dev/ttyUSB3", 2)
    hand = devices.make_device("hand", "", {"host": "10.0.0.9"})  # empty device_kind: the default kind
    assert type(hand).__name__ == "InspireHand" and hand.config.host == "10.0.0.9"
    cam = devices.make_device("camera", "", {"serial": "f0123", "name": "front", "color_width": 960, "color_height": 540,
                                    "color_fps": 30, "enable_depth": False})
    assert type(cam).__name__ == "RealSenseCamera"
    assert (cam.config.serial, cam.config.name, cam.config.color_width, cam.config.enable_depth) == (
        "f0123", "front", 960, False)
    with pytest.raises(ValueError, match="known arm kinds"):
        devices.make_device("arm", "ur5e", {})
    with pytest.raises(ValueError, match=r"no option\(s\) \['hand_host'\]"):
        devices.make_device("hand", "", {"hand_host": "10.0.0.9"})
    with pytest.raises(ValueError, match="no option"):
        devices.make_device("arm", "", {"robot_ip": "172.16.0.9"}, '{"warp_speed": 9}')
