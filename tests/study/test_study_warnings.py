"""Valid but suspect settings get a warning before any compute (``study plan`` and ``study run``), and only
when they are there: an evaluation testing on its own training images, an evaluation testing on images its
runs pre-trained on, two fractions selecting the same images or none."""

import json

import numpy as np
from PIL import Image
from study_helpers import write_study

from mimscale.cli import main
from mimscale.evaluate.overlap import same_images_warning, shared_images
from mimscale.study import load_study
from mimscale.study.commands import check_all
from mimscale.study.eval_check import check_study

BASE = {"model.name": "swinv2-cpu-t", "data.val_size": 8, "data.probe_size": 8, "train.batch_size": 8,
        "train.iters": 4, "train.warmup_iters": 1, "train.eval_points": 1, "train.recon_images": 0}
SHAPES = "shapes:size=32,pool=50,seed=0"


def write_pngs(root, folders: list[str], classes: int = 2, per_class: int = 6) -> None:
    rng = np.random.default_rng(0)
    for sub in folders:
        for c in range(classes):
            folder = root / sub / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def study_file(tmp_path, evals, source=SHAPES, fractions=(1.0,), name="warned"):
    evals = [{"knn_k": 3, **e} if e.get("task") == "knn" else e for e in evals]  # the folders hold a few images
    doc = {"name": name, "base": {**BASE, "data.source": source}, "axes": {"data.fraction": list(fractions)},
           "evals": evals}
    return write_study(tmp_path / f"{name}.yaml", doc)


def plan_warnings(path, capsys) -> list[str]:
    assert main(["study", "plan", str(path), "--no-flops"]) == 0
    return [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]


def test_an_eval_testing_on_its_training_images_is_warned_and_a_real_split_is_not(tmp_path, capsys):
    root = tmp_path / "data"
    write_pngs(root, ["train", "val"])
    same = study_file(tmp_path, [{"name": "knn", "task": "knn", "train_source": f"folder:{root}/train",
                                  "test_source": f"folder:{root}/train"}], name="same")
    lines = plan_warnings(same, capsys)
    assert len(lines) == 1
    assert lines[0].startswith("mimscale study: warning: eval 'knn': train_source and test_source share images")
    # a test folder inside the training folder (read whole: it holds more than train/ and val/)
    mixed = tmp_path / "mixed"
    write_pngs(mixed, ["train", "val", "extra"])
    inside = study_file(tmp_path, [{"name": "knn", "task": "knn", "train_source": f"folder:{mixed}",
                                    "test_source": f"folder:{mixed}/val"}])
    assert "share images" in plan_warnings(inside, capsys)[0]
    apart = study_file(tmp_path, [{"name": "knn", "task": "knn", "train_source": f"folder:{root}"}])  # train / val
    assert plan_warnings(apart, capsys) == []
    # study run's check before any compute says it too, and goes on
    assert check_all(load_study(same), tmp_path / "out")[0]
    assert "warning: eval 'knn': train_source and test_source share images" in capsys.readouterr().err


def test_test_images_in_the_pretraining_pool_are_warned_with_the_fix(tmp_path, capsys):
    mixed = tmp_path / "mixed"  # train/ and val/ beside another folder: ROOT is read whole, val/ included
    write_pngs(mixed, ["train", "val", "extra"])
    evals = [{"name": "knn", "task": "knn", "train_source": f"folder:{mixed}/train",
              "test_source": f"folder:{mixed}/val"}]
    lines = plan_warnings(study_file(tmp_path, evals, source=f"folder:{mixed}"), capsys)
    assert len(lines) == 1 and "its test images are in the pre-training data" in lines[0]
    assert lines[0].endswith(f"point data.source at a folder without them (e.g. folder:{mixed.resolve()}/train)")
    assert plan_warnings(study_file(tmp_path, evals, source=f"folder:{mixed}/train"), capsys) == []
    split = tmp_path / "split"  # only train/ and val/: pre-training reads ROOT/train, the eval tests on ROOT/val
    write_pngs(split, ["train", "val"])
    assert plan_warnings(study_file(tmp_path, [{"name": "knn", "task": "knn"}], source=f"folder:{split}"),
                         capsys) == []


def test_fractions_selecting_the_same_images_or_none_are_named(tmp_path, capsys):
    evals = [{"name": "knn", "task": "knn"}]
    # 50 images in 10 classes: 0.1 and 0.11 both take one image per class; 0.05 takes none: refused, not warned
    lines = plan_warnings(study_file(tmp_path, evals, fractions=(0.1, 0.11, 0.5)), capsys)
    assert len(lines) == 1
    assert "data.fraction 0.1 and 0.11 of shapes:size=32,pool=50,seed=0 select the same 10 images" in lines[0]
    assert main(["study", "plan", str(study_file(tmp_path, evals, fractions=(0.05, 0.5))), "--no-flops"]) == 2
    err = capsys.readouterr().err
    assert "error: data.source: fraction 0.05 of 50 images selects no image" in err and "warning" not in err
    assert plan_warnings(study_file(tmp_path, evals, fractions=(0.1, 0.5, 1.0)), capsys) == []
    assert main(["study", "plan", str(study_file(tmp_path, evals, fractions=(0.1, 0.11))), "--json", "--no-flops"]) == 0
    assert len(json.loads(capsys.readouterr().out)["warnings"]) == 1


def test_overlap_rule_on_descriptions():
    probe = {"kind": "shapes", "size": 32, "pool": 100, "seed": 0, "split": "probe"}
    assert shared_images(probe, {**probe, "pool": 20})  # a smaller pool of the same seed is a prefix
    assert not shared_images(probe, {**probe, "split": "test"})
    assert not shared_images(probe, {**probe, "seed": 1})
    assert not shared_images({"kind": "folder", "path": "/d", "split": "train"}, {"kind": "folder", "path": "/d",
                                                                                   "split": "val"})
    assert shared_images({"kind": "folder", "path": "/d", "split": "auto"}, {"kind": "folder", "path": "/d/val"})
    assert same_images_warning(probe, {**probe, "split": "test"}) is None


def test_check_study_on_the_shipped_demo_has_no_warning():
    assert check_study(load_study("studies/demo.yaml")).warnings == []
