"""A study on a folder of the user's own images: its evaluations use that folder's labelled splits (never the
built-in shapes silently), every evaluation problem is found before any training, and adding or changing an
evaluation on a finished study runs only that evaluation on the existing checkpoints."""

import json

import numpy as np
import pandas as pd
import yaml
from PIL import Image
from study_helpers import write_study

from mimscale.cli import main
from mimscale.evaluate.config import resolve_spec
from mimscale.study import load_study, store

BASE = {"model.name": "swinv2-cpu-t", "data.val_size": 8, "data.probe_size": 8, "train.batch_size": 8,
        "train.iters": 4, "train.warmup_iters": 1, "train.eval_points": 1, "train.recon_images": 0}


def write_pngs(root, splits: dict[str, int], classes: int = 4) -> None:
    """``classes`` class folders of tiny PNGs (a colour per class) under root/<split>/ (or root/ for "")."""
    rng = np.random.default_rng(0)
    for split, per_class in splits.items():
        for c in range(classes):
            folder = root / split / f"class{c}" if split else root / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                img = np.clip(rng.normal(60 * c, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i}.png")


def folder_study(tmp_path, root, evals) -> object:
    doc = {"name": "mine", "base": {**BASE, "data.source": f"folder:{root}"}, "axes": {"seed": [0]},
           "evals": evals}
    return write_study(tmp_path / "mine.yaml", doc)


def test_without_splits_plan_and_run_refuse_before_compute_naming_each_problem(tmp_path, capsys):
    root = tmp_path / "images"
    write_pngs(root, {"": 10})
    path = folder_study(tmp_path, root, [{"name": "knn", "task": "knn"},
                                         {"name": "lin", "task": "linear", "linear_epochs": 0}])
    out = tmp_path / "out"
    for cmd in ("plan", "run"):
        assert main(["study", cmd, str(path), "--out", str(out)]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 2  # every problem at once, one line each
        assert lines[0].startswith("mimscale study: error: eval 'knn': no train_source given, so the run's own "
                                   f"images: train_source folder:{root}")
        assert "has no validation split (ROOT/train and ROOT/val class folders)" in lines[0]
        assert lines[1].startswith("mimscale study: error: eval 'lin': ") and "linear_epochs" in lines[1]
    assert not out.exists()  # nothing was created, let alone trained
    assert main(["study", "plan", str(path), "--json", "--no-flops"]) == 2  # the plan, then the problems
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["runs"]) == 1 and len(doc["eval_problems"]) == 2


def test_builtin_pretraining_keeps_the_builtin_eval_data_and_its_identity():
    spec = {"name": "knn", "task": "knn"}
    assert resolve_spec(spec, "shapes:size=32,pool=100") is spec  # results written before keep their identity
    assert resolve_spec(spec, "folder:/x")["train_source"] == "folder:/x"
    explicit = {**spec, "train_source": "shapes"}
    assert resolve_spec(explicit, "folder:/x") is explicit  # an eval that names built-in data gets it


def test_folder_splits_are_the_eval_data_and_new_evals_never_retrain(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root = tmp_path / "images"
    write_pngs(root, {"train": 6, "val": 4})  # 24 + 16 PNGs
    path = folder_study(tmp_path, root, [{"name": "knn", "task": "knn", "knn_k": 3}])
    out = tmp_path / "out"
    expected = f"folder:{root.resolve()} (train / val)"

    assert main(["study", "plan", str(path), "--out", str(out), "--json", "--no-flops"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["eval_data"] == {"knn": expected} and doc["runs"][0]["eval_data"] == {"knn": expected}
    assert main(["study", "plan", str(path), "--out", str(out), "--no-flops"]) == 0
    assert f"eval knn data: {expected}" in capsys.readouterr().out

    assert main(["study", "run", str(path), "--out", str(out), "--threads", "1"]) == 0
    assert f"eval knn on {expected}" in capsys.readouterr().err
    run_id = load_study(path).runs[0].id
    run = store.run_dir(out, run_id).path
    result = json.loads((run / "eval" / "knn.json").read_text())
    assert result["data"]["train"] == {"kind": "folder", "path": str(root.resolve()), "split": "train"}
    assert result["data"]["test"]["split"] == "val" and result["data"]["name"] == expected
    assert (result["data"]["num_train"], result["data"]["num_test"], result["data"]["num_classes"]) == (24, 16, 4)
    assert f"[evaluate] knn: knn on {expected}" in (run / "worker.log").read_text()
    assert main(["study", "results", str(out)]) == 0
    capsys.readouterr()
    table = pd.read_csv(out / "results.csv")
    assert table.loc[0, "eval_knn_data"] == expected and 0 <= table.loc[0, "eval_knn_top1"] <= 1

    # Change the kNN and add a second evaluation on the finished study: only they run, on its checkpoint.
    pretrained = {name: (run / name).read_bytes() for name in ("metrics.jsonl", "summary.json")}
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    knn_before = (run / "eval" / "knn.json").read_bytes()
    path = folder_study(tmp_path, root, [{"name": "knn", "task": "knn", "knn_k": 5},
                                         {"name": "knn2", "task": "knn", "knn_k": 2}])
    assert main(["study", "plan", str(path), "--out", str(out), "--no-flops"]) == 0
    assert (f"already in {out.resolve()}: 1 of 1 runs pre-trained, 0 done; left: 0 pre-training(s), 2 evaluation(s)"
            in capsys.readouterr().out)
    assert main(["study", "plan", str(path), "--out", str(out), "--json"]) == 0
    left = json.loads(capsys.readouterr().out)["total"]["left"]
    assert left == {"runs_started": 1, "pretrained": 1, "done": 0, "to_pretrain": 0, "evaluations": 2}
    assert main(["study", "run", str(path), "--out", str(out), "--threads", "1"]) == 0
    # knn changed, knn2 new: the console says what the restart does
    assert "(pre-trained; evaluations left: knn, knn2)" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in pretrained} == pretrained  # no pre-training redone
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == checkpoints
    log = (run / "worker.log").read_text()
    assert log.count("[evaluate] knn: knn on") == 2 and log.count("[evaluate] knn2: knn on") == 1
    knn = json.loads((run / "eval" / "knn.json").read_text())
    assert (run / "eval" / "knn.json").read_bytes() != knn_before and knn["identity"]["knn_k"] == 5
    assert json.loads((run / "eval" / "knn2.json").read_text())["identity"]["knn_k"] == 2
    stored = yaml.safe_load((out / "study.yaml").read_text())
    assert [e["name"] for e in stored["evals"]] == ["knn", "knn2"]  # status and results read the new list

    # Removing an evaluation leaves nothing to do.
    path = folder_study(tmp_path, root, [{"name": "knn2", "task": "knn", "knn_k": 2}])
    assert main(["study", "run", str(path), "--out", str(out), "--threads", "1"]) == 0
    assert "1 of 1 runs already finished" in capsys.readouterr().err
    assert (run / "worker.log").read_text() == log


def test_results_and_report_name_the_eval_data_also_of_older_results(tmp_path):
    from mimscale.analysis.results import eval_columns, read_eval
    from mimscale.report.build import _eval_data_note

    run = tmp_path / "runs" / "r1"
    (run / "eval").mkdir(parents=True)
    older = {"metrics": {"top1": 0.5}, "data": {"train": {"kind": "shapes", "split": "probe"},
                                                "test": {"kind": "shapes", "split": "test"}}}
    (run / "eval" / "knn.json").write_text(json.dumps(older))  # written before data.name existed
    row = read_eval(run)
    assert row == {"eval_knn_top1": 0.5, "eval_knn_data": "shapes (built-in) (probe / test)"}
    assert eval_columns(pd.DataFrame([row])) == ["eval_knn_top1"]  # the data column is not a metric
    assert "<li>eval_knn_*: shapes (built-in) (probe / test)</li>" in _eval_data_note(pd.DataFrame([row]))


def test_the_checks_list_a_folder_once(tmp_path, monkeypatch):
    """Pre-training, held-out and three evaluations on one folder: one listing (ImageNet-22K is 14.2M files)."""
    import mimscale.data.sources as sources
    from mimscale.study.commands import check_all

    root = tmp_path / "images"
    write_pngs(root, {"train": 6, "val": 4})
    path = folder_study(tmp_path, root, [{"name": "knn", "task": "knn", "knn_k": 3}, {"name": "lin", "task": "linear"},
                                         {"name": "ft", "task": "finetune", "batch_size": 8}])
    built = []
    real = sources.build_source
    monkeypatch.setattr(sources, "build_source", lambda spec, *a, **k: built.append(spec) or real(spec, *a, **k))
    data, pre, problems = check_all(load_study(path), tmp_path / "out")
    assert problems == [] and pre.problems == [] and len(data) == 3
    assert built == [f"folder:{root}"]
