"""No result under the wrong name, no damaged checkpoint trusted: a run directory's identity is what its
checkpoints and summary say (not config.yaml alone), a branch starts only from a trunk that is the same run but
for its length (and never with fewer held-out points), checkpoints carry a checksum verified on load, every
unreadable checkpoint is one line and a damaged newest one is passed over, and ``data verify`` accepts the run
directories the tool writes."""

import random
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from mimscale.cli import main
from mimscale.engine.checkpoint import load_checkpoint, newest_intact
from mimscale.errors import CheckpointError
from mimscale.rundir import RunDir

TINY = ["model.name=swinv2-cpu-t", "model.drop_path_rate=0.1", "data.source=shapes:size=32,pool=256,seed=0",
        "data.val_size=64", "data.probe_size=64", "train.batch_size=16", "train.eval_points=3",
        "train.eval_budget=0", "train.recon_images=2", "threads=1", "train.warmup_iters=2", "train.schedule=step",
        "train.base_lr=5e-3", "objective.norm_target_window=15"]
RUN = [*TINY, "train.iters=6"]  # checkpoints at 4 and 6 (the last two evaluations)


def _one_line(capsys, code: int, expected: int = 2) -> str:
    err = capsys.readouterr().err.strip()
    assert code == expected and len(err.splitlines()) == 1, (code, err)
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished seed-0 run; tests copy it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["pretrain", *RUN, f"run_dir={run}"]) == 0
    assert [s for s, _ in RunDir(run).list_checkpoints()] == [4, 6]
    return run


def _copy(run: Path, to: Path) -> RunDir:
    shutil.copytree(run, to)
    return RunDir(to)


def _flip_a_bit(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    i = rng.randrange(len(data))
    data[i] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------- checksums and unreadable files

def test_a_checkpoint_carries_its_sha256_and_twenty_bit_flipped_copies_are_all_refused(finished, tmp_path):
    original = RunDir(finished).checkpoint(6)
    meta = original.with_suffix(".json").read_text()
    assert '"sha256"' in meta
    rng = random.Random(0)
    for i in range(20):
        copy = tmp_path / f"copy{i}" / original.name
        copy.parent.mkdir()
        shutil.copy(original, copy)
        copy.with_suffix(".json").write_text(meta)
        _flip_a_bit(copy, rng)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(copy)
        assert len(str(e.value).splitlines()) == 1 and "is damaged" in str(e.value), str(e.value)
    # without its meta (as from mimscale before 0.3, or a file copied alone) a checkpoint loads as before
    alone = tmp_path / "alone.pt"
    shutil.copy(original, alone)
    assert load_checkpoint(alone)["step"] == 6


def _zip_with_junk(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00(X\x01")
        z.writestr("archive/version", b"3\n")


@pytest.mark.parametrize("content", [
    b"",
    b"step: 6\nmodel: weights\n",  # text
    bytes(random.Random(1).randrange(256) for _ in range(4096)),  # garbage bytes
    b"\x80\x02}q\x00X\x04\x00\x00\x00stepq\x01K\x06s.",  # a pickle that is a dict, not a torch file
    b"\x80\x02]q\x00(K\x01K\x02e.",  # a pickled list
    b"PK\x03\x04" + b"\x00" * 100,  # a cut zip header
    "zip",  # a zip archive of junk
], ids=["empty", "text", "garbage", "plain-pickle", "list-pickle", "cut-zip", "junk-zip"])
def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, content):
    path = tmp_path / "step_0000001.pt"
    if content == "zip":
        _zip_with_junk(path)
    else:
        path.write_bytes(content)
    try:
        saved = load_checkpoint(path)
    except CheckpointError as e:
        assert len(str(e).splitlines()) == 1 and str(path) in str(e), str(e)
    else:  # only a pickled plain dict may load: it is then not a pre-training checkpoint (Layout.check)
        assert saved == {"step": 6}


def test_newest_intact_passes_over_damaged_files_and_says_so(finished, tmp_path, capsys):
    rd = _copy(finished, tmp_path / "run")
    paths = [p for _, p in rd.list_checkpoints()]
    paths[-1].write_text("not a checkpoint")
    path, saved = newest_intact(paths, "test")
    assert path == paths[0] and saved["step"] == 4
    assert "[test] passed over 1 damaged checkpoint(s)" in capsys.readouterr().err
    paths[0].write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        newest_intact(paths, "test")
    assert len(str(e.value).splitlines()) == 1 and "none of 2 checkpoints is intact" in str(e.value)
    assert newest_intact([], "test") == (None, None)


def test_resume_passes_over_a_bit_flipped_newest_checkpoint_to_the_same_result(finished, tmp_path, capsys):
    rd = _copy(finished, tmp_path / "run")
    reference = rd.read_summary()
    weights = load_checkpoint(rd.checkpoint(6))["model"]
    rd.summary.unlink()
    _flip_a_bit(rd.checkpoint(6), random.Random(2))
    capsys.readouterr()
    assert main(["pretrain", *RUN, f"run_dir={rd.path}"]) == 0
    err = capsys.readouterr().err
    assert "passed over 1 damaged checkpoint(s)" in err and "resuming from step_0000004.pt" in err
    assert rd.read_summary()["final_val_loss"] == reference["final_val_loss"]
    again = load_checkpoint(rd.checkpoint(6))["model"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def test_val_loss_passes_over_a_damaged_newest_checkpoint(finished, tmp_path, capsys):
    rd = _copy(finished, tmp_path / "run")
    rd.checkpoint(6).write_bytes(b"garbage")
    capsys.readouterr()
    code = main(["val-loss", str(rd.path), "--data", "shapes:size=32,pool=32,seed=5"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "[val-loss] passed over 1 damaged checkpoint(s)" in err and "step_0000004.pt" in err


def test_finetune_passes_over_a_damaged_newest_checkpoint(finished, tmp_path, capsys):
    rd = _copy(finished, tmp_path / "run")
    rd.checkpoint(6).write_bytes(b"step: 6\n")  # text where the newest checkpoint was
    capsys.readouterr()
    code = main(["finetune", str(rd.path), "task=knn"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "[evaluate] passed over 1 damaged checkpoint(s)" in err and "using step_0000004.pt" in err


# ---------------------------------------------------------------------------- the run directory's identity

@pytest.mark.parametrize("case", ["finished", "partial"])
def test_a_run_dir_without_config_yaml_is_what_its_files_say(finished, tmp_path, capsys, case):
    rd = _copy(finished, tmp_path / "run")
    if case == "partial":
        rd.summary.unlink()
    rd.config.unlink()
    # another seed: refused, and config.yaml is not written with the wrong config
    capsys.readouterr()
    err = _one_line(capsys, main(["pretrain", *RUN, "seed=1", f"run_dir={rd.path}"]))
    assert "holds" in err and "choose another run_dir" in err
    assert not rd.config.exists()
    # another model: the same one line, no traceback
    err = _one_line(capsys, main(["pretrain", *RUN, "model.name=swinv2-cpu-s", f"run_dir={rd.path}"]))
    assert "choose another run_dir" in err
    # the same run: config.yaml comes back and the result is the run's own
    assert main(["pretrain", *RUN, f"run_dir={rd.path}"]) == 0
    assert rd.config.exists()
    assert rd.read_summary()["final_val_loss"] == RunDir(finished).read_summary()["final_val_loss"]


def test_checkpoints_of_another_run_are_refused_even_under_a_matching_config_yaml(finished, tmp_path, capsys):
    rd = _copy(finished, tmp_path / "run")
    rd.summary.unlink()
    rd.config.unlink()
    # a config.yaml that says seed 1 over seed 0's checkpoints (written by hand, or by an older version)
    assert main(["pretrain", *RUN, "seed=1", "--print-config"]) == 0
    rd.config.write_text(capsys.readouterr().out)
    err = _one_line(capsys, main(["pretrain", *RUN, "seed=1", f"run_dir={rd.path}"]))
    assert "holds checkpoints of another run" in err and "step_0000006.pt" in err
    assert not rd.summary.exists()


# ---------------------------------------------------------------------------- branches

@pytest.fixture(scope="module")
def trunks(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("trunks")
    out = {"alone": base / "alone", "shared": base / "shared", "unshared": base / "unshared",
           "cosine": base / "cosine"}
    assert main(["pretrain", *TINY, "train.eval_points=4", "train.iters=12", f"run_dir={out['alone']}"]) == 0
    assert main(["pretrain", *TINY, "train.eval_points=4", "train.iters=20", "train.share_with=[12]",
                 f"run_dir={out['shared']}"]) == 0
    # trained before sharing was on: it has a step-10 checkpoint but no held-out losses at 3, 6, 9
    assert main(["pretrain", *TINY, "train.eval_points=4", "train.iters=20", "train.ckpt_every=5",
                 "train.keep_last=0", f"run_dir={out['unshared']}"]) == 0
    assert main(["pretrain", *TINY, "train.eval_points=4", "train.iters=20", "train.schedule=cosine",
                 "train.ckpt_every=5", "train.keep_last=0", f"run_dir={out['cosine']}"]) == 0
    return out


@pytest.mark.parametrize("trunk,overrides,why", [
    ("shared", ["seed=1"], "differs in more than its length"),
    ("shared", ["train.base_lr=1e-3"], "differs in more than its length"),
    ("cosine", ["train.schedule=cosine"], "cannot share a prefix"),
    ("shared", ["train.iters=8"], "departs from a longer one at step 7, not 10"),
])
def test_a_branch_from_a_trunk_that_is_not_its_prefix_is_refused(trunks, tmp_path, capsys, trunk, overrides, why):
    branch = tmp_path / "branch"
    capsys.readouterr()
    code = main(["pretrain", *TINY, "train.eval_points=4", "train.iters=12", *overrides,
                 f"train.branch_from={trunks[trunk]}@10", f"run_dir={branch}"])
    err = _one_line(capsys, code)
    assert "cannot start from it" in err and why in err, err
    assert not RunDir(branch).list_checkpoints() and not RunDir(branch).summary.exists()


def test_a_branch_never_has_fewer_held_out_points_than_the_run_alone(trunks, tmp_path, capsys):
    branch = RunDir(tmp_path / "branch")
    capsys.readouterr()
    assert main(["pretrain", *TINY, "train.eval_points=4", "train.iters=12",
                 f"train.branch_from={trunks['unshared']}@10", f"run_dir={branch.path}"]) == 0
    err = capsys.readouterr().err
    assert "the trunk has no held-out loss at step(s) 3, 6, 9" in err and "training this run alone" in err
    alone = RunDir(trunks["alone"])
    evals = sorted(r["step"] for r in branch.read_metrics() if r["split"] == "val" and r["name"] == "loss")
    assert evals == [0, 3, 6, 9, 12]
    assert branch.read_summary()["branched_from"] is None
    assert branch.read_summary()["final_val_loss"] == alone.read_summary()["final_val_loss"]


def test_a_branch_from_its_true_trunk_still_forks(trunks, tmp_path):
    branch = RunDir(tmp_path / "branch")
    assert main(["pretrain", *TINY, "train.eval_points=4", "train.iters=12",
                 f"train.branch_from={trunks['shared']}@10", f"run_dir={branch.path}"]) == 0
    assert branch.read_summary()["branched_from"]["step"] == 10
    assert branch.read_summary()["final_val_loss"] == RunDir(trunks["alone"]).read_summary()["final_val_loss"]


# ---------------------------------------------------------------------------- data verify

def test_data_verify_accepts_a_run_dir_the_tool_wrote(finished, capsys):
    capsys.readouterr()
    assert main(["data", "verify", str(finished)]) == 0, capsys.readouterr().err
    assert "manifests verified" in capsys.readouterr().out
