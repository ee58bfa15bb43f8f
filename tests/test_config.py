import os
import subprocess
import sys

import pytest
from omegaconf.errors import ReadonlyConfigError

from mimscale.config import ConfigError, load_config, run_id


def test_precedence_defaults_file_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  iters: 100\n  batch_size: 32\nmodel:\n  name: swinv2-b\n")
    cfg = load_config(f, ["train.batch_size=16"])
    assert cfg.train.iters == 100 and cfg.train.batch_size == 16 and cfg.model.name == "swinv2-b"
    assert cfg.train.base_lr == 1e-4  # default kept
    with pytest.raises(ReadonlyConfigError):
        cfg.train.iters = 5  # frozen


@pytest.mark.parametrize("override, message", [
    ("train.itres=5", "unknown config key 'train.itres'; did you mean 'train.iters'"),
    ("train.iters=abc", "train.iters"),
    ("data.fraction=1.5", "data.fraction must be in (0, 1]"),
    ("nonsense", "is not key=value"),
])
def test_bad_input_one_line_errors(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.iters=10", override] if "iters" not in override else [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_length_and_file(tmp_path):
    with pytest.raises(ConfigError, match="exactly one training length"):
        load_config(None, [])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad, [])


def test_run_id_stable_and_sensitive():
    a = load_config(None, ["train.iters=10"])
    assert run_id(a) == run_id(load_config(None, ["train.iters=10"]))
    assert run_id(a) != run_id(load_config(None, ["train.iters=11"]))
    assert run_id(a) != run_id(load_config(None, ["train.iters=10", "data.fraction=0.5"]))
    # where a run goes does not change what it is
    assert run_id(a) == run_id(load_config(None, ["train.iters=10", "out=elsewhere", "data.num_workers=3"]))


def test_run_id_same_across_processes_and_hash_seeds():
    code = "from mimscale.config import load_config, run_id; print(run_id(load_config(None, ['train.iters=10'])))"
    ids = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        ids.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                               check=True).stdout.strip())
    assert ids == {run_id(load_config(None, ["train.iters=10"]))}
