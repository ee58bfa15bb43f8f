"""The evaluation entry points: result files, reuse, every task end to end on tiny data, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from eval_runs import simmim_state, write_run
from PIL import Image

from mimscale.cli import main
from mimscale.evaluate import finetune_main, load_eval_config, run

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "src" / "mimscale" / "configs" / "finetune").glob("*.yaml"))
TINY = dict(train_source="shapes:size=32,pool=120,seed=0,split=probe",
            test_source="shapes:size=32,pool=60,seed=0,split=test", batch_size=30)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs") / "vit", "vit-cpu-s", simmim_state("vit-cpu-s"), step=3)


def test_shipped_configs_parse_and_name_their_command():
    assert {p.stem for p in CONFIGS} >= {"finetune", "linear", "knn", "segment"}
    for path in CONFIGS:
        assert path.read_text().startswith("# mimscale finetune RUN_DIR -c finetune/" + path.name)
        load_eval_config(path)
    paper = load_eval_config(CONFIGS[[p.stem for p in CONFIGS].index("finetune")])
    assert (paper.base_lr, paper.layer_decay, paper.drop_path, paper.mixup, paper.cutmix) == (1.25e-3, 0.75, 0.1,
                                                                                              0.8, 1.0)
    assert (paper.epochs, paper.warmup_epochs, paper.label_smoothing, paper.reprob) == (100, 20, 0.1, 0.25)


def test_knn_result_file_schema_and_reuse(vit_run, capsys):
    assert finetune_main([str(vit_run), "task=knn", *(f"{k}={v}" for k, v in TINY.items())]) == 0
    assert "knn (knn): top1" in capsys.readouterr().out
    path = vit_run / "eval" / "knn.json"
    result = json.loads(path.read_text())
    assert {"task", "metrics", "headline", "config", "wall_time_s", "notes", "checkpoint", "step"} <= set(result)
    assert result["headline"] == "top1" and 0.0 <= result["metrics"]["top1"] <= 1.0 and result["step"] == 3
    assert result["data"]["num_train"] == 120 and result["config"]["knn_k"] == 20
    mtime = path.stat().st_mtime_ns
    again = run(vit_run, dict(task="knn", **TINY))  # finished: read back, not recomputed
    assert again == result and path.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="holds a different knn evaluation"):
        run(vit_run, dict(task="knn", knn_k=5, **TINY))
    assert run(vit_run, dict(task="knn", knn_k=5, **TINY), force=True)["config"]["knn_k"] == 5


def test_result_is_redone_when_the_run_has_a_newer_checkpoint(tmp_path):
    state = simmim_state("vit-cpu-s")
    run_dir = write_run(tmp_path / "vit", "vit-cpu-s", state, step=3)
    assert run(run_dir, dict(task="knn", **TINY))["step"] == 3
    write_run(run_dir, "vit-cpu-s", state, step=7)  # the pre-training went on
    assert run(run_dir, dict(task="knn", **TINY))["step"] == 7
    assert run(run_dir, dict(task="knn", init="random", name="knn-rand", **TINY))["step"] is None


def test_linear_probe_variants(vit_run):
    sgd = run(vit_run, dict(task="linear", features="last", linear_epochs=5, **TINY))
    m = {**sgd["details"], **sgd["metrics"]}
    assert set(sgd["metrics"]) == {"top1", "top5"}  # only what the model achieves is a metric
    assert m["best_lr"] in m["lrs"] and len(m["top1_per_lr"]) == len(m["lrs"]) and m["feature_dim"] == 32
    logistic = run(vit_run, dict(task="linear", probe="logistic", name="logistic", **TINY))
    assert logistic["details"]["feature_dim"] == 64 and 0.0 <= logistic["metrics"]["top1"] <= 1.0


def test_finetune_reports_best_and_final(vit_run):
    res = run(vit_run, dict(task="finetune", epochs=2, warmup_epochs=0.5, crop_scale=[0.67, 1.0], **TINY))
    m = {**res["details"], **res["metrics"]}
    assert {"top1", "top5", "final_top1", "final_top5", "best_epoch", "final_epoch"} <= set(m)
    assert m["final_epoch"] == 2 and len(res["history"]) == 2
    assert m["top1"] == max(h["top1"] for h in res["history"]) and m["final_top1"] == res["history"][-1]["top1"]
    assert "best over per-epoch evaluations" in res["notes"]


def _flat_folder(root: Path) -> Path:
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(root / f"{i}.png")
    return root


@pytest.mark.parametrize("args, message", [
    (["task=linear", "train_source=folder:{folder}", "test_source=folder:{folder}"], "has no labels"),
    (["task=knn", "num_classes=7"], "num_classes=7 but the data has 10 classes"),
    (["task=knn", "img_size=36"], "img_size (36, 36) is not divisible by patch_size 8"),
    (["task=segment", "train_source=digits", "test_source=digits"], "has no segmentation masks"),
    (["task=probe"], "task must be one of"),
    (["tsak=knn"], "unknown config key 'tsak'"),
])
def test_bad_input_is_one_line_exit_2(vit_run, tmp_path, capsys, args, message):
    folder = _flat_folder(tmp_path / "flat")
    args = [a.format(folder=folder) for a in args]
    sizes = [] if any(a.startswith(("train_source", "num_classes")) for a in args) else [
        f"train_source={TINY['train_source']}", f"test_source={TINY['test_source']}"]
    assert main(["finetune", str(vit_run), *args, *sizes, "name=bad-input"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mimscale finetune: error: ") and message in err and err.count("\n") == 1


def _seg_folder(root: Path, n: int = 8, mask_size: int = 32) -> Path:
    """images/{train,val}/k.png with masks/{train,val}/k.png: a bright square (class 1) on class 0, a 255 border."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for k in range(n):
            img = np.full((32, 32, 3), 30, np.uint8)
            lo = 4 + k
            img[lo:lo + 12, lo:lo + 12] = 220
            mask = np.zeros((32, 32), np.uint8)
            mask[lo:lo + 12, lo:lo + 12] = 1
            mask[0] = 255
            Image.fromarray(img).save(root / "images" / split / f"{k}.png")
            Image.fromarray(mask[:mask_size, :mask_size]).save(root / "masks" / split / f"{k}.png")
    return root


def test_segmentation_from_a_folder_of_image_mask_pairs(vit_run, tmp_path, capsys):
    folder = _seg_folder(tmp_path / "seg")
    res = run(vit_run, dict(task="segment", name="segfolder", train_source=f"segfolder:{folder}", epochs=1,
                            warmup_epochs=1,  # the default 20 would be longer than the fine-tuning: refused
                            batch_size=4, seg_width=16))
    m = {**res["details"], **res["metrics"]}
    assert m["num_classes"] == 2 and res["data"]["test"]["split"] == "val" and res["data"]["num_train"] == 8
    assert 0.0 <= m["miou"] <= 1.0 and len(m["iou_per_class"]) == 2
    bad = _seg_folder(tmp_path / "bad", mask_size=30)
    assert main(["finetune", str(vit_run), "task=segment", "name=bad-seg", f"train_source=segfolder:{bad}"]) == 2
    assert "but the image is (32, 32)" in capsys.readouterr().err


def test_a_run_pretrained_on_own_images_is_evaluated_on_them_not_on_shapes(tmp_path):
    from mimscale.evaluate.config import as_eval_config
    from mimscale.evaluate.runner import with_run_data

    (tmp_path / "config.yaml").write_text("data:\n  source: folder:/data/mine\n")
    assert with_run_data(tmp_path, as_eval_config({"task": "knn"})).train_source == "folder:/data/mine"
    own = as_eval_config({"task": "knn", "train_source": "shapes"})
    assert with_run_data(tmp_path, own) is own  # an eval that names its data gets it
    (tmp_path / "config.yaml").write_text("data:\n  source: shapes:size=32,pool=100\n")
    builtin = as_eval_config({"task": "knn"})
    assert with_run_data(tmp_path, builtin) is builtin  # the built-in shapes pools, identity unchanged
