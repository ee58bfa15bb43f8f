import os
import subprocess
import sys

import pytest
from omegaconf.errors import ReadonlyConfigError

from mimscale.config import ConfigError, load_config, run_id, warmup_steps


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


@pytest.mark.parametrize("warmup, pair", [
    ("1.25%", ["train.warmup_iters=-1", "train.warmup_fraction=0.0125"]),
    ("5%", ["train.warmup_iters=-1", "train.warmup_fraction=0.05"]),
    ("0.07%", ["train.warmup_iters=-1", "train.warmup_fraction=0.0007"]),
    ("1562", ["train.warmup_iters=1562"]),
    ("0", ["train.warmup_iters=0"]),
])
def test_warmup_in_one_key_is_the_same_run_as_the_pair(warmup, pair):
    # train.warmup is written into the two keys it stands for when the config loads: the same run id, and the
    # key itself holds its neutral value afterwards.
    one = load_config("pretrain/swinv2-paper.yaml", [f"train.warmup={warmup}"])
    two = load_config("pretrain/swinv2-paper.yaml", pair)
    assert run_id(one) == run_id(two) and one.train.warmup == ""
    assert (one.train.warmup_iters, one.train.warmup_fraction) == (two.train.warmup_iters, two.train.warmup_fraction)


def test_warmup_steps_resolves_either_form():
    paper = load_config("pretrain/swinv2-paper.yaml")
    assert [warmup_steps(paper.train, n) for n in (125_000, 250_000, 500_000)] == [1562, 3125, 6250]
    assert warmup_steps(load_config("pretrain/swinv2-paper.yaml", ["train.warmup=1562"]).train, 500_000) == 1562
    with pytest.raises(ConfigError, match="train.warmup must be steps .* or a percentage"):
        load_config("pretrain/swinv2-paper.yaml", ["train.warmup=5 %"])


def test_config_paths_resolve_to_the_packaged_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs here: found in the package, by short name or the former path
    assert load_config("pretrain/swinv2-cpu.yaml").model.name == load_config("configs/pretrain/swinv2-cpu.yaml").model.name
    with pytest.raises(ConfigError) as e:
        load_config("pretrain/nope.yaml")
    assert str(e.value).startswith("config file not found: pretrain/nope.yaml (tried pretrain/nope.yaml, ")
    assert str(e.value).endswith("mimscale/configs/pretrain/nope.yaml)")


@pytest.mark.parametrize("interval, pair", [
    ("10%", ["train.eval_every=0", "train.eval_points=10"]),
    ("12.5%", ["train.eval_every=0", "train.eval_points=8"]),
    ("500", ["train.eval_every=500"]),
])
def test_eval_interval_in_one_key_is_the_same_run_as_the_pair(interval, pair):
    one = load_config("pretrain/swinv2-paper.yaml", [f"train.eval_interval={interval}"])
    two = load_config("pretrain/swinv2-paper.yaml", pair)
    assert run_id(one) == run_id(two) and one.train.eval_interval == ""
    assert (one.train.eval_every, one.train.eval_points) == (two.train.eval_every, two.train.eval_points)


@pytest.mark.parametrize("interval", ["0", "3%", "0%", "200%", "every 5"])
def test_eval_interval_refuses_what_is_not_a_spacing(interval):
    with pytest.raises(ConfigError, match="train.eval_interval must be steps > 0 .* or a percentage"):
        load_config("pretrain/swinv2-paper.yaml", [f"train.eval_interval={interval}"])
