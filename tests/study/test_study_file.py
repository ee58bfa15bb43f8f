"""The documented study file works as written: docs/STUDIES.md's 200-image example (its YAML block, only the path
changed) plans and runs on 200 small JPEGs; `mimscale init` writes a study that runs; and what used to fail
late (a fraction smaller than one batch, a relative path, a full disk, kNN's k) is refused before compute, every
problem at once."""

import re
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from mimscale.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "STUDIES.md"
DOC_ROOT = "/data/my-images"  # the path the doc's example names


def write_jpegs(root: Path, classes: int = 10, train: int = 16, val: int = 4) -> None:
    """classes x (train + val) tiny JPEGs (32 px, a colour and a stripe per class), deterministic."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        for split, count in (("train", train), ("val", val)):
            folder = root / split / f"class{c:02d}"
            folder.mkdir(parents=True)
            for i in range(count):
                img = np.clip(rng.normal(20 * c + 30, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
                img[:, 3 * c:3 * c + 3] = 255
                Image.fromarray(img).save(folder / f"{i:02d}.jpg", quality=90)


def doc_example() -> str:
    blocks = re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(), re.M | re.S)
    found = [b for b in blocks if f"folder:{DOC_ROOT}" in b]
    assert len(found) == 1
    return found[0]


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "my-images"
    write_jpegs(root)
    assert len(list(root.rglob("*.jpg"))) == 200
    return root


def test_the_documented_example_plans_and_runs_as_written(tmp_path, images, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    study = tmp_path / "my-study.yaml"
    study.write_text(doc_example().replace(DOC_ROOT, str(images)))
    out = tmp_path / "out"

    assert main(["study", "plan", str(study), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # The line the doc shows, with this ROOT: ROOT/val is held out and not in the pre-training pool.
    shown = re.search(r"^data folder:.*$", DOC.read_text(), re.M).group(0)
    assert shown.replace(DOC_ROOT, str(images)) in printed.splitlines()
    assert "estimated time on this machine" in printed

    assert main(["study", "run", str(study), "--out", str(out)]) == 0
    assert main(["study", "results", str(out)]) == 0
    capsys.readouterr()
    runs = pd.read_csv(out / "results.csv")
    assert len(runs) == 2 and set(runs["status"]) == {"done"}
    assert sorted(runs["data_size"]) == [80, 160]
    assert set(runs["eval_knn_data"]) == {f"folder:{images.resolve()} (train / val)"}
    assert runs["eval_knn_top1"].between(0, 1).all()


def test_init_writes_a_study_that_runs_and_never_overwrites(tmp_path, images, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    study = tmp_path / "mine.yaml"
    assert main(["init", "--data", str(images), "--out", str(study), "--iters", "1"]) == 0
    text = study.read_text()
    doc = yaml.safe_load(text)
    assert doc["base"]["data.source"] == f"folder:{images.resolve()}"
    assert doc["base"]["train.batch_size"] == 64  # the 0.5 fraction selects 80 images
    assert doc["name"] == "mine" and text.startswith("# A mimscale study")
    out = tmp_path / "out"
    assert main(["study", "run", str(study), "--out", str(out), "--workers", "2"]) == 0
    assert main(["study", "results", str(out)]) == 0
    runs = pd.read_csv(out / "results.csv")
    assert len(runs) == 4 and set(runs["status"]) == {"done"}
    assert set(runs["eval_knn_data"]) == {f"folder:{images.resolve()} (train / val)"}

    capsys.readouterr()
    assert main(["init", "--data", str(images), "--out", str(study)]) == 2
    assert f"{study} exists" in capsys.readouterr().err
    assert study.read_text() == text


def test_init_without_data_is_a_valid_study_on_the_builtin_shapes(tmp_path, capsys):
    study = tmp_path / "shapes-study.yaml"
    assert main(["init", "--out", str(study)]) == 0
    assert yaml.safe_load(study.read_text())["base"]["data.source"].startswith("shapes:")
    assert main(["study", "plan", str(study), "--no-flops"]) == 0
    err = capsys.readouterr().err
    assert "error" not in err and "warning" not in err


def test_init_checks_the_folder_layout(tmp_path, capsys):
    flat = tmp_path / "flat"
    (flat / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(flat / "cats" / "a.jpg")
    assert main(["init", "--data", str(flat), "--out", str(tmp_path / "x.yaml")]) == 2
    assert "no train/ folder (expected ROOT/train/<class>/*.jpg and ROOT/val/<class>/*.jpg)" in capsys.readouterr().err
    write_jpegs(tmp_path / "imgs", classes=2, train=2, val=1)
    assert main(["init", "--data", str(tmp_path / "imgs" / "train"), "--out", str(tmp_path / "x.yaml")]) == 2
    assert "give its parent" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


def test_init_quotes_a_folder_path_that_yaml_would_cut_or_refuse(tmp_path, capsys):
    root = tmp_path / "my: images #2"  # unquoted, ': ' is a YAML error and ' #' starts a comment
    write_jpegs(root, classes=2, train=4, val=1)
    study = tmp_path / "s.yaml"
    assert main(["init", "--data", str(root), "--out", str(study)]) == 0, capsys.readouterr().err
    assert yaml.safe_load(study.read_text())["base"]["data.source"] == f"folder:{root.resolve()}"


def _study(tmp_path, base: dict, evals=None, axes=None) -> Path:
    doc = {"name": "s", "base_config": "pretrain/swinv2-cpu.yaml",
           "base": {"model.name": "swinv2-cpu-t", "train.iters": 2, **base},
           "axes": axes or {"data.fraction": [0.1, 0.5, 1.0]}, "evals": evals or []}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_every_problem_is_found_before_compute_at_once(tmp_path, images, capsys):
    # The issue: 64 images per batch, a 0.1 fraction of 160 images (2 of 16 per class), and a kNN asking for more neighbours
    # than there are images. Both are refused by plan and run, before anything is created.
    path = _study(tmp_path, {"data.source": f"folder:{images}"}, [{"name": "knn", "task": "knn", "knn_k": 500}])
    out = tmp_path / "out"
    for cmd in ("plan", "run"):
        assert main(["study", cmd, str(path), "--out", str(out), *(["--no-flops"] if cmd == "plan" else [])]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2, err
        assert re.search(r"run \w+: data.fraction=0.1 selects 20 of the 160 training images of folder:.*, fewer "
                         r"than one batch \(train.batch_size 64\); lower train.batch_size to at most 20", err[0])
        assert "eval 'knn': knn_k 500 is more than its 160 training images" in err[1]
    assert not out.exists()


def test_bad_fine_tuning_evals_on_the_builtin_pools_are_found_with_the_plan(tmp_path, capsys):
    # A setting that cannot be read and a batch larger than the built-in 2,000-image pool (drop_last drops it
    # whole): both listed after the plan, not found after pre-training or stopping the plan at the first.
    path = _study(tmp_path, {}, [{"name": "ft", "task": "finetune", "batch_size": 0},
                                 {"name": "ft2", "task": "finetune", "batch_size": 4096}])
    out = tmp_path / "out"
    assert main(["study", "plan", str(path), "--out", str(out), "--no-flops"]) == 2
    printed, err = capsys.readouterr()
    assert "total: 3 runs" in printed
    assert err.splitlines() == [
        "mimscale study: error: eval 'ft': batch_size must be positive, got 0",
        "mimscale study: error: eval 'ft2': the training data has 2000 images, fewer than one global batch "
        "(batch_size 4096): lower batch_size or set drop_last=false"]
    assert main(["study", "run", str(path), "--out", str(out)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 2 and not out.exists()


def test_a_missing_held_out_source_is_named_by_its_own_key(tmp_path, capsys):
    path = _study(tmp_path, {"data.val_source": f"folder:{tmp_path / 'no-val'}"})
    assert main(["study", "plan", str(path), "--no-flops"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"mimscale study: error: data.val_source: data path not found: {tmp_path / 'no-val'}"]


def test_a_relative_data_path_names_the_folder_it_was_read_from(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _study(tmp_path, {"data.source": "folder:nowhere/images"})
    assert main(["study", "plan", str(path), "--no-flops"]) == 2
    err = capsys.readouterr().err
    assert f"resolved against the working directory {tmp_path}" in err


def test_checkpoints_that_cannot_fit_are_refused_and_close_ones_warned(tmp_path, capsys, monkeypatch):
    path = _study(tmp_path, {}, axes={"model.name": ["swinv2-cpu-t", "swinv2-cpu-s"]})
    usage = namedtuple("usage", "total used free")
    from mimscale.study.cost import CHECKPOINT_BYTES_PER_PARAM, checkpoint_params
    from mimscale.study.spec import load_study

    runs = load_study(path).runs
    per_run = [3 * CHECKPOINT_BYTES_PER_PARAM * checkpoint_params(r.cfg) for r in runs]  # keep_last 2, +1 written
    needed = sum(per_run)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 * needed, 0, needed - 1))
    assert main(["study", "plan", str(path), "--no-flops", "--json"]) == 2
    assert "the checkpoints of 2 run(s) need about" in capsys.readouterr().err
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 * needed, 0, needed + 1))
    assert main(["study", "plan", str(path), "--no-flops"]) == 0
    assert "warning: the checkpoints of 2 run(s)" in capsys.readouterr().err
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 * needed, 0, 2 * needed))
    assert main(["study", "plan", str(path), "--no-flops"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_model_names_and_fine_tuning_data_are_checked_before_compute(tmp_path, capsys):
    write_jpegs(tmp_path / "few", classes=2, train=2, val=1)  # 4 training images
    few = f"folder:{tmp_path / 'few'}"
    tune = {"task": "finetune", "train_source": few, "epochs": 1, "warmup_epochs": 0, "drop_last": False}
    path = _study(tmp_path, {}, axes={"model.name": ["swinv2-cpu-t", "swinv2-nope"]},
                  evals=[{"name": "ft", **tune}, {"name": "ft8", **tune, "batch_size": 8, "accum_steps": 8},
                         {"name": "ftdrop", **tune, "drop_last": True}])
    assert main(["study", "plan", str(path), "--no-flops"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "warning: eval 'ft': 4 training images, fewer than its batch_size 64: each epoch is one step" in err[0]
    problems = [line.removeprefix("mimscale study: error: ") for line in err[1:]]
    assert any(re.fullmatch(r"run \w+: model.name: unknown model 'swinv2-nope'.*", p) for p in problems)
    assert "eval 'ft8': its 4 training images are fewer than one per process and accumulation step (8); a " \
           "fine-tuning epoch would have no step" in problems
    assert "eval 'ftdrop': the training data has 4 images, fewer than one global batch (batch_size 64): lower " \
           "batch_size or set drop_last=false" in problems
    assert len(problems) == 3


def test_a_source_at_root_train_beside_root_val_is_pointed_to_root(tmp_path, images, capsys):
    path = _study(tmp_path, {"data.source": f"folder:{images / 'train'}", "train.batch_size": 8})
    assert main(["study", "plan", str(path), "--no-flops"]) == 0
    err = capsys.readouterr().err
    assert f"warning: data.source folder:{images / 'train'} is a train/ folder beside {images / 'val'}" in err
    assert f"with data.source: folder:{images} the runs pre-train on all of train/" in err
