"""Every bad input gets one line and exit 2 (never a traceback, never silent acceptance); a run that diverges
stops with exit 1 and keeps only healthy checkpoints; a damaged newest checkpoint is passed over."""

import errno
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mimscale import config as C
from mimscale.cli import main
from mimscale.rundir import RunDir

TINY = ["model.name=swinv2-cpu-t", "data.source=shapes:size=32,pool=128,seed=0", "data.val_size=32",
        "data.probe_size=32", "train.batch_size=16", "train.eval_points=2", "train.eval_budget=0",
        "train.recon_images=0", "threads=1", "train.warmup_iters=2", "objective.norm_target_window=15",
        "train.iters=4"]


def _one_line_error(capsys, code, expected_code=2):
    """The one error line (progress lines of a run that got going may come before it)."""
    out = capsys.readouterr()
    errors = [ln for ln in out.err.splitlines() if ln.startswith("mimscale")]
    assert code == expected_code and len(errors) == 1 and "Traceback" not in out.err, out.err
    assert out.err.strip().splitlines()[-1] == errors[0]
    return errors[0]


@pytest.mark.parametrize("override, message", [
    ("data.img_size=36", "not a multiple of data.mask_patch_size"),
    ("data.img_size=0", "data.img_size must be a positive number"),
    ("data.mask_patch_size=0", "data.mask_patch_size must be a positive number"),
    ("train.base_lr=-1", "train.base_lr must be positive"),
    ("train.base_lr=nan", "train.base_lr must be a finite number"),
    ("device=tpu", "device must be auto, cpu, cuda or cuda:N"),
    ("data.num_workers=-1", "data.num_workers must be >= 0"),
    ("data.crop_scale=[2,0.1]", "data.crop_scale must be [lo, hi]"),
    ("data.crop_ratio=[0,1]", "data.crop_ratio must be [lo, hi]"),
    ("data.mask_ratio=1.0", "data.mask_ratio must be in (0, 1)"),
    ("train.epochs=-1", "train.epochs must be >= 0"),
    ("train.warmup_fraction=2", "train.warmup_fraction must be in [0, 1]"),
    ("threads=-1", "threads must be >= 0"),
    ("train.eval_every=-5", "train.eval_every must be >= 0"),
    ("train.ckpt_every=-3", "train.ckpt_every must be >= 0"),
    ("train.log_every=0", "train.log_every must be positive"),
    ("data.val_size=-1", "data.val_size must be >= 0"),
    ("train.betas=[0.9,1.5]", "train.betas must both be in [0, 1)"),
    ("train.divergence_factor=0.5", "train.divergence_factor must be > 1"),
    ("train.no_such_key=1", "unknown config key 'train.no_such_key'"),
])
def test_bad_values_exit_2_with_one_line(tmp_path, capsys, override, message):
    code = main(["pretrain", *TINY, override, f"run_dir={tmp_path / 'r'}"])
    assert message in _one_line_error(capsys, code)
    assert not (tmp_path / "r").exists()  # refused before anything was written


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_on_a_machine_without_it(tmp_path, capsys):
    code = main(["pretrain", *TINY, "device=cuda", f"run_dir={tmp_path / 'r'}"])
    assert "has no CUDA device" in _one_line_error(capsys, code)


def test_run_dir_that_is_a_file_and_a_config_that_is_a_list(tmp_path, capsys):
    (tmp_path / "README.md").write_text("not a directory")
    code = main(["pretrain", *TINY, f"run_dir={tmp_path / 'README.md'}"])
    assert "is not a directory" in _one_line_error(capsys, code)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    code = main(["pretrain", "-c", str(tmp_path / "list.yaml")])
    assert "is a YAML list, not a mapping" in _one_line_error(capsys, code)


def test_full_disk_while_checkpointing_and_ctrl_c_during_start_up(tmp_path, capsys, monkeypatch):
    import mimscale.engine.checkpoint as ckpt
    import mimscale.train.setup as setup

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as m:
        m.setattr(ckpt, "atomic_write", full)
        code = main(["pretrain", *TINY, f"run_dir={tmp_path / 'full'}"])
        assert "No space left on device" in _one_line_error(capsys, code)

    def torch_full(obj, f):  # how torch's zip writer reports a full disk: a RuntimeError, not an OSError
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file "
                           "data/12: file write failed")

    with monkeypatch.context() as m:
        m.setattr(ckpt.torch, "save", torch_full)
        code = main(["pretrain", *TINY, f"run_dir={tmp_path / 'torch-full'}"])
        assert "cannot write checkpoint" in _one_line_error(capsys, code)
        assert not list((tmp_path / "torch-full" / "checkpoints").glob("*.pt"))

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(setup, "build_simmim", interrupted)
        code = main(["pretrain", *TINY, f"run_dir={tmp_path / 'ctrl-c'}"])
        assert "interrupted; rerun the same command" in _one_line_error(capsys, code, 130)


def test_a_damaged_newest_checkpoint_is_passed_over_and_said(tmp_path, capsys):
    run = tmp_path / "r"
    args = [*TINY, "train.iters=6", "train.eval_points=3", f"run_dir={run}"]
    assert main(["pretrain", *args]) == 0
    rd = RunDir(run)
    reference = rd.read_summary()
    assert [s for s, _ in rd.list_checkpoints()] == [4, 6]
    rd.summary.unlink()
    rd.checkpoint(6).write_bytes(rd.checkpoint(6).read_bytes()[:1000])  # truncated
    capsys.readouterr()
    assert main(["pretrain", *args]) == 0
    err = capsys.readouterr().err
    assert "passed over 1 damaged checkpoint(s)" in err and "resuming from step_0000004.pt" in err
    assert rd.read_summary()["final_val_loss"] == reference["final_val_loss"]  # resumed exactly from step 4


@pytest.mark.parametrize("lr", ["1e3", "1e6"])
def test_a_diverging_run_stops_with_exit_1_and_keeps_only_healthy_checkpoints(tmp_path, capsys, lr):
    run = tmp_path / "r"
    code = main(["pretrain", *TINY, "train.iters=40", "train.ckpt_every=1", f"train.base_lr={lr}",
                 f"run_dir={run}"])
    err = _one_line_error(capsys, code, 1)
    assert "diverged" in err or "exploded" in err or "non-finite" in err
    assert not RunDir(run).summary.exists()
    from mimscale.engine.checkpoint import load_checkpoint

    for _, path in RunDir(run).list_checkpoints():
        weights = load_checkpoint(path)["model"]
        norm = math.sqrt(sum(float(v.float().square().sum()) for v in weights.values()))
        assert norm < 100, (path.name, norm)  # the initial norm of this preset is ~10


def test_a_healthy_run_is_not_stopped_by_the_guard(tmp_path):
    assert main(["pretrain", *TINY, "train.iters=30", "train.base_lr=5e-3", f"run_dir={tmp_path / 'ok'}"]) == 0


def test_analyze_of_a_header_only_csv_says_why(tmp_path, capsys):
    (tmp_path / "r.csv").write_text("model,params,data_size,iters,val_loss\n")
    code = main(["analyze", str(tmp_path / "r.csv")])
    err = _one_line_error(capsys, code)
    assert err.rstrip().endswith("the table has no rows"), err


# Values of each config type that a user might type, good and bad.
_VALUES = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.booleans(), st.text(max_size=8), st.lists(st.floats(-3, 3), max_size=3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(sorted(k for k in C._all_keys(OmegaConf.structured(C.Config()))
                                  if not k.endswith(("model", "objective", "data", "train", "kwargs")))),
       value=_VALUES)
def test_fuzz_every_config_value_validates_or_is_one_config_error(key, value):
    try:
        C.load_config(None, [f"{key}={OmegaConf.to_yaml(value).strip() if isinstance(value, list) else value}"])
    except C.ConfigError as e:
        assert str(e) and "\n" not in str(e)
