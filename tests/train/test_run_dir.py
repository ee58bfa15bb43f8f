"""The run directory as the rest of the system reads it: summary keys, the results table's run-time column,
checkpoints that cannot run code, and a run directory that belongs to another run."""

import json
import pickle
import random

import numpy as np
import pandas as pd
import torch
import yaml

from mimscale import rundir as R
from mimscale.cli import main
from mimscale.engine.checkpoint import atomic_torch_save, load_checkpoint
from mimscale.engine.runtime import rng_state, set_rng_state
from mimscale.rundir import RunDir

TINY = {"model.name": "vit-cpu-s", "data.source": "shapes:size=32,pool=128,seed=0", "data.val_size": 32,
        "data.probe_size": 32, "train.batch_size": 16, "train.iters": 4, "train.eval_points": 2,
        "train.eval_budget": 0, "train.recon_images": 0, "threads": 1}
TINY_ARGS = [f"{k}={v}" for k, v in TINY.items()]


def test_summary_keys_and_the_run_time_column_of_results_csv(tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "base": {k: v for k, v in TINY.items() if k != "threads"},
                                     "axes": {"data.fraction": [1.0]}}))
    out = tmp_path / "out"
    assert main(["study", "run", str(study), "--out", str(out), "--workers", "1"]) == 0
    assert main(["study", "results", str(out)]) == 0
    run = RunDir(next((out / "runs").iterdir()))
    summary = run.read_summary()
    assert sorted(summary) == sorted(R.SUMMARY_KEYS)
    table = pd.read_csv(out / "results.csv")
    assert table.loc[0, "train_time_s"] == summary["train_time_s"] > 0
    assert table.loc[0, "skipped_steps"] == 0 and table.loc[0, "skipped_files"] == 0


def test_a_checkpoint_that_would_run_code_is_refused_with_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", *TINY_ARGS, "train.iters=2", "train.eval_points=1", f"run_dir={run}"]) == 0
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    rd = RunDir(run)
    rd.summary.unlink()  # unfinished: pretrain resumes from the checkpoint
    atomic_torch_save(rd.checkpoint(2), {"model": Payload(), "step": 2})
    rd.checkpoint(2).with_suffix(".json").unlink()  # a file from elsewhere: no checksum to fail first
    capsys.readouterr()
    assert main(["pretrain", *TINY_ARGS, "train.iters=2", "train.eval_points=1", f"run_dir={run}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused: loading would run code" in err, err
    assert main(["finetune", str(run), "task=knn"]) == 2
    assert "refused: loading would run code" in capsys.readouterr().err
    assert not marker.exists()

    rd.checkpoint(2).write_bytes(b"not a checkpoint")
    assert main(["finetune", str(run), "task=knn"]) == 2
    assert "is not a readable checkpoint" in capsys.readouterr().err


def test_rng_state_round_trips_weights_only_and_old_checkpoints_still_load(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = rng_state()
    atomic_torch_save(tmp_path / "new.pt", {"rng": [state]})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "new.pt")["rng"][0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    # mimscale 0.1 stored numpy's state as a tuple holding an array: still read, weights-only
    legacy = {**state, "numpy": np.random.get_state()}
    np.random.rand()
    atomic_torch_save(tmp_path / "old.pt", {"rng": [legacy]})
    after = np.random.rand()
    set_rng_state(load_checkpoint(tmp_path / "old.pt")["rng"][0])
    assert np.random.rand() != after and pickle.dumps(legacy["numpy"])  # restored to before the draws


def test_a_finished_run_directory_of_another_config_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", *TINY_ARGS, "train.iters=2", "train.eval_points=1", f"run_dir={run}"]) == 0
    before = RunDir(run).summary.read_text()
    capsys.readouterr()
    assert main(["pretrain", *TINY_ARGS, "train.iters=3", "train.eval_points=1", f"run_dir={run}"]) == 2
    assert "holds a different run" in capsys.readouterr().err
    assert RunDir(run).summary.read_text() == before
    (tmp_path / "file").write_text("x")
    assert main(["pretrain", *TINY_ARGS, f"run_dir={tmp_path / 'file'}"]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_a_finished_evaluation_is_reused_whatever_the_other_tasks_settings(tmp_path):
    from omegaconf import OmegaConf

    from mimscale.evaluate.config import identity, load_eval_config, same_identity

    knn = load_eval_config(None, ["task=knn"])
    assert same_identity(identity(knn), load_eval_config(None, ["task=knn", "base_lr=1.0", "epochs=3"]))
    assert not same_identity(identity(knn), load_eval_config(None, ["task=knn", "knn_k=5"]))
    assert "base_lr" not in identity(knn) and "knn_k" in identity(knn)
    old = {**OmegaConf.to_container(knn), "device": "cpu", "epochs": 7}
    assert same_identity(old, knn)  # a result written when identities held every key still counts


def _image_folder(root, n_per_class: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n_per_class):
            arr = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(root / f"c{c}" / f"{i:03d}.png")


def test_unreadable_images_are_left_out_of_validation_and_counted_in_training_across_resumes(tmp_path, capsys):
    _image_folder(tmp_path / "train", 40, 0)
    _image_folder(tmp_path / "val", 10, 1)
    (tmp_path / "train" / "c0" / "000.png").write_bytes(b"not a png")
    (tmp_path / "val" / "c1" / "003.png").write_bytes(b"not a png either")
    args = [*TINY_ARGS, f"data.source=folder:{tmp_path / 'train'}", f"data.val_source=folder:{tmp_path / 'val'}",
            "data.val_size=0", "data.probe_size=16", "train.iters=6", "train.ckpt_every=3", "train.eval_points=2"]
    assert main(["pretrain", *args, f"run_dir={tmp_path / 'a'}"]) == 0
    err = capsys.readouterr().err
    a = RunDir(tmp_path / "a")
    excluded = json.loads(a.excluded.read_text())
    assert [e[1] for e in excluded["heldout"]] == ["c1/003.png"] and "left out unreadable images" in err
    summary = a.read_summary()
    assert summary["data_size"] == 80  # with data.val_source, nothing is held out of the training folder
    assert json.loads(a.subset.read_text())["holdout"]["external"]["kind"] == "folder"
    assert summary["skipped_files"] > 0 and "unreadable training image(s) replaced so far" in err
    logged = [r for r in a.read_metrics() if r["name"] == R.SKIPPED_FILES]
    assert logged and logged[-1]["value"] == summary["skipped_files"]

    # The same run interrupted after step 3: the count goes on from the checkpoint, it does not restart at 0.
    assert main(["pretrain", *args, f"run_dir={tmp_path / 'b'}"]) == 0
    b = RunDir(tmp_path / "b")
    b.summary.unlink()
    b.checkpoint(6).unlink()
    assert main(["pretrain", *args, f"run_dir={tmp_path / 'b'}"]) == 0
    assert b.read_summary()["skipped_files"] == summary["skipped_files"]
    assert b.read_summary()["final_val_loss"] == summary["final_val_loss"]


def test_a_resumed_run_keeps_the_thread_count_it_started_with(tmp_path, capsys):
    args = [*TINY_ARGS, "train.iters=6", "train.ckpt_every=3", "train.eval_points=2"]
    assert main(["pretrain", *args, f"run_dir={tmp_path / 'a'}"]) == 0
    b = RunDir(tmp_path / "b")
    assert main(["pretrain", *args, f"run_dir={b}"]) == 0
    b.summary.unlink()
    b.checkpoint(6).unlink()
    capsys.readouterr()
    assert main(["pretrain", *args, "threads=2", f"run_dir={b}"]) == 0
    assert "resuming with 1 threads, as the run started (this process was given 2)" in capsys.readouterr().err
    assert b.read_summary()["final_val_loss"] == RunDir(tmp_path / "a").read_summary()["final_val_loss"]
