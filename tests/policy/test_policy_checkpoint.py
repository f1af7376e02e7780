"""A policy checkpoint on disk: what it stores must come back (normalisation statistics included), and a broken
file is one clear error naming the file and the place, not a traceback from deep inside a loader."""
import json

import numpy as np
import pytest
import torch

from jala_policy import ConfigError, JalaPolicy, JalaPolicyConfig
from jala_policy.normalization import NormalizationStats

pytestmark = pytest.mark.safety  # a checkpoint that loads with the wrong statistics moves the robot wrongly

IMG_HW = (48, 64)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    policy = JalaPolicy.build(JalaPolicyConfig.from_preset("tiny", input_image_hw=IMG_HW))
    rng = np.random.default_rng(3)
    dim = policy.config.action_head.state_dim
    lo = rng.uniform(-2.0, 0.0, dim)
    state = NormalizationStats(lo, lo + rng.uniform(0.5, 3.0, dim), lo + 0.5, rng.uniform(0.1, 1.0, dim))
    alo = rng.uniform(-1.0, 0.5, dim)
    action = NormalizationStats(alo, alo + rng.uniform(0.2, 2.0, dim), alo + 0.1, rng.uniform(0.1, 1.0, dim))
    policy.set_normalization(state, action)
    d = tmp_path_factory.mktemp("ckpt") / "policy"
    policy.save_pretrained(d)
    return policy, d


def test_non_default_normalization_survives_save_and_load(saved):
    policy, d = saved
    loaded = JalaPolicy.from_pretrained(d, device="cpu")
    for part in ("state", "action"):
        want, got = getattr(policy.normalizer, part), getattr(loaded.normalizer, part)
        for field in ("min", "max", "mean", "std"):
            np.testing.assert_allclose(getattr(got, field), getattr(want, field), err_msg=f"{part}.{field}")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*IMG_HW, 3), dtype=np.uint8)
    q = np.array([0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.8, 1000, 1000, 1000, 1000, 900, 500], dtype=np.float64)
    a = policy.predict(img, "water the plant", q, seed=1).positions
    b = loaded.predict(img, "water the plant", q, seed=1).positions
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["config.json", "normalization.json"])
def test_a_corrupted_json_file_is_one_clear_error_naming_file_and_position(saved, tmp_path, name):
    import shutil

    _, d = saved
    broken = tmp_path / "broken"
    shutil.copytree(d, broken)
    text = (broken / name).read_text()
    (broken / name).write_text(text[: len(text) // 2])  # cut in the middle, as by a full disk
    with pytest.raises(ConfigError) as info:
        JalaPolicy.from_pretrained(broken, device="cpu")
    msg = str(info.value)
    assert str(broken / name) in msg and "line" in msg and "column" in msg, msg
    assert "\n" not in msg


def test_a_wrong_field_in_config_json_names_the_file(saved, tmp_path):
    import shutil

    _, d = saved
    broken = tmp_path / "wrong"
    shutil.copytree(d, broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["action_dtt"] = 0.1
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="config.json"):
        JalaPolicy.from_pretrained(broken, device="cpu")


def test_run_time_settings_are_written_into_the_checkpoint_checked_first(saved, tmp_path, capsys):
    """python -m jala_policy.inference_settings: execute_steps and noise_scale change in config.json and the
    loaded policy has them (weights and statistics untouched); an invalid value is one line and leaves the file
    as it was."""
    import shutil

    from jala_policy.inference_settings import main

    policy, d = saved
    ckpt = tmp_path / "ckpt"
    shutil.copytree(d, ckpt)
    assert main([str(ckpt)]) == 0
    assert "execute_steps: null" in capsys.readouterr().out
    assert main([str(ckpt), "--execute-steps", "12", "--noise-scale", "0.5"]) == 0
    assert "execute_steps: 12 (was null)" in capsys.readouterr().out
    loaded = JalaPolicy.from_pretrained(ckpt, device="cpu")
    assert loaded.config.inference.execute_steps == 12 and loaded.config.inference.noise_scale == 0.5
    np.testing.assert_array_equal(loaded.normalizer.action.max, policy.normalizer.action.max)
    for name, value in policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    before = (ckpt / "config.json").read_bytes()
    horizon = loaded.config.action_head.action_horizon
    for bad in (["--execute-steps", str(horizon + 1)], ["--execute-steps", "0"], ["--noise-scale", "2"]):
        with pytest.raises(SystemExit) as exc:
            main([str(ckpt), *bad])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "config.json" in err and "Traceback" not in err, err
        assert (ckpt / "config.json").read_bytes() == before
    assert main([str(ckpt), "--execute-steps", "default"]) == 0
    assert JalaPolicy.from_pretrained(ckpt, device="cpu").config.inference.execute_steps is None
    assert not list(ckpt.glob(".config.json.*"))  # no temporary file left behind
