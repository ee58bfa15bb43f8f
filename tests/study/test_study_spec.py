"""Study files: expansion, run identity, and one-line errors for bad input (exit 2, nothing written)."""

import copy
import hashlib
import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf
from study_helpers import write_study

from mimscale import config as C
from mimscale.cli import main
from mimscale.study import StudyError, load_study, study_main

DOC = {
    "name": "grid",
    "base": {"train": {"iters": 20, "batch_size": 8}, "data.val_size": 32},
    "axes": {"model.name": ["swinv2-cpu-t", "swinv2-cpu-s"], "data.fraction": [0.1, 0.5, 1.0]},
    "zip": [{"train.iters": [10, 40], "train.warmup_iters": [1, 4]}],
    "evals": [{"name": "knn", "task": "knn", "knn_k": 5}, {"task": "linear"}],
}


def test_expansion_is_the_ordered_product_with_values_resolved(tmp_path):
    study = load_study(write_study(tmp_path / "s.yaml", DOC))
    assert len(study.runs) == 2 * 3 * 2
    assert study.axis_keys() == ["model.name", "data.fraction", "train.iters", "train.warmup_iters"]
    first, last = study.runs[0], study.runs[-1]
    assert first.axes == {"model.name": "swinv2-cpu-t", "data.fraction": 0.1, "train.iters": 10,
                          "train.warmup_iters": 1}
    assert last.axes == {"model.name": "swinv2-cpu-s", "data.fraction": 1.0, "train.iters": 40,
                         "train.warmup_iters": 4}
    # base (nested and dotted), axes and zip all land in the resolved config; defaults fill the rest
    cfg = study.runs[3].cfg
    got = (cfg.model.name, cfg.data.fraction, cfg.train.iters, cfg.train.warmup_iters)
    assert got == ("swinv2-cpu-t", 0.5, 40, 4)
    assert (cfg.train.batch_size, cfg.data.val_size, cfg.train.base_lr) == (8, 32, C.TrainConfig.base_lr)
    assert [r.id for r in study.runs] == [C.run_id(r.cfg) for r in study.runs]
    assert len({r.id for r in study.runs}) == 12
    assert study.evals == [{"name": "knn", "task": "knn", "knn_k": 5}, {"name": "linear", "task": "linear"}]


def test_base_config_file_is_inlined_and_inline_base_wins(tmp_path):
    pre = "train:\n  iters: 7\n  batch_size: 4\nseed: 3\nout: elsewhere\nthreads: 8\n"
    (tmp_path / "pre.yaml").write_text(pre)  # out/threads: where a single run goes, dropped in a study
    doc = {"base_config": "pre.yaml", "base": {"train.iters": 9}, "axes": {"seed": [3, 4]}}
    study = load_study(write_study(tmp_path / "s.yaml", doc))
    assert study.name == "s"
    assert study.base == {"train.iters": 9, "train.batch_size": 4, "seed": 3}
    got = [(r.cfg.train.iters, r.cfg.train.batch_size, r.cfg.seed) for r in study.runs]
    assert got == [(9, 4, 3), (9, 4, 4)]


def test_string_values_keep_their_type_and_characters(tmp_path):
    src = "shapes:size=32,pool=100,seed=1"
    study = load_study(write_study(tmp_path / "s.yaml", {"base": {"train.iters": 5}, "axes": {
        "data.source": [src, "shapes:size=32,pool=200,seed=1"], "model.kwargs": [{}, {"window_size": 2}]}}))
    assert study.runs[0].cfg.data.source == src
    assert dict(study.runs[1].cfg.model.kwargs) == {"window_size": 2}


_IDS = (
    "import sys; from mimscale.study import load_study; "
    "print(' '.join(r.id for r in load_study(sys.argv[1]).runs))"
)


def test_run_ids_are_stable_across_processes_and_hash_seeds(tmp_path):
    path = write_study(tmp_path / "s.yaml", DOC)
    here = [r.id for r in load_study(path).runs]
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", _IDS, str(path)], capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout.split()
        assert out == here
    # the id is sha256 of the sorted-key JSON of the identity config: nothing depends on the interpreter
    cfg = load_study(path).runs[0].cfg
    blob = json.dumps(C.identity(cfg), sort_keys=True, separators=(",", ":")).encode()
    assert here[0] == hashlib.sha256(blob).hexdigest()[:10]


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _perturb(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v * 1.5 + 0.125
    if isinstance(v, str):
        return v + "x"
    if isinstance(v, (list, tuple)):
        return [_perturb(v[0]), *v[1:]] if v else [1]
    if v is None:
        return "x"
    if isinstance(v, dict):
        return {"extra": 1}
    raise AssertionError(type(v))


def test_run_id_changes_when_any_resolved_value_changes():
    cfg = C.load_config(None, ["train.iters=10"])
    base = C.run_id(cfg)
    plain = OmegaConf.to_container(cfg)
    identity_keys = dict(_leaves(C.identity(cfg)))
    assert len(identity_keys) > 40
    for key, value in _leaves(plain):
        changed = copy.deepcopy(plain)
        node = changed
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = _perturb(value)
        new = C.run_id(OmegaConf.create(changed))
        if key in identity_keys or key in C.ADDED_KEYS:  # a later key: out of the id only at its neutral value
            assert new != base, f"changing {key} kept the run id"
        else:  # where / how fast a run goes: same run
            assert key in C.NON_IDENTITY_KEYS and new == base, key


@pytest.mark.parametrize("doc, message", [
    ({"axes": {"model.nmae": ["swinv2-cpu-t"]}, "base": {"train.iters": 5}},
     "unknown config key 'model.nmae'; did you mean 'model.name'?"),
    ({"axes": {"data.fraction": []}, "base": {"train.iters": 5}}, "axis 'data.fraction' is empty"),
    ({"axes": {"data.fraction": 0.5}, "base": {"train.iters": 5}}, "axis 'data.fraction' must be a list"),
    ({"axes": {"train.iters": ["many"]}}, "could not be converted to Integer"),
    ({"axes": {"data.fraction": [0.1, 0.1]}, "base": {"train.iters": 5}}, "resolve to the same config"),
    ({"axes": {"run_dir": ["a", "b"]}, "base": {"train.iters": 5}}, "'run_dir', which the study runner sets"),
    ({"axes": {"seed": [1]}, "zip": [{"train.iters": [1, 2], "train.warmup_iters": [1]}]},
     "different lengths"),
    ({"axes": {"seed": [1]}, "base": {"train.iters": 5}, "evals": [{"name": "a"}]},
     "must be a mapping with a 'task'"),
    ({"axis": {"seed": [1]}}, "unknown study key 'axis'"),
    ({"axes": {"seed": [1, 2]}}, "give exactly one training length"),
])
def test_bad_study_files_give_one_line_errors_and_exit_2(tmp_path, capsys, doc, message):
    path = write_study(tmp_path / "s.yaml", doc)
    with pytest.raises(StudyError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_study(path)
    for cmd in ("plan", "run"):
        assert main(["study", cmd, str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mimscale study: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_eval_entries_are_checked_before_anything_runs_and_config_files_inlined(tmp_path, capsys):
    (tmp_path / "knn.yaml").write_text("task: knn\nknn_k: 7\n")
    doc = {"base": {"train.iters": 5}, "axes": {"seed": [0]},
           "evals": [{"config": "knn.yaml", "knn_t": 0.1}, {"name": "lin", "task": "linear", "k": 3}]}
    path = write_study(tmp_path / "s.yaml", doc)
    study = load_study(path)
    assert study.evals[0] == {"name": "knn", "task": "knn", "knn_k": 7, "knn_t": 0.1}
    assert main(["study", "run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mimscale study: error: eval 'lin': unknown config key 'k'")
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_unparseable_and_missing_files(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("axes: {model.name: [a, b\n")
    assert main(["study", "plan", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cannot parse" in err and err.count("\n") == 1
    assert main(["study", "run", str(tmp_path / "missing.yaml")]) == 2
    assert "study file not found" in capsys.readouterr().err
    assert main(["study", "status", str(tmp_path)]) == 2
    assert "not a study directory" in capsys.readouterr().err
    assert main(["study", "run"]) == 2  # argparse usage error, as a code
    assert "the following arguments are required" in capsys.readouterr().err


def test_plan_prints_runs_and_cost(tmp_path, capsys):
    path = write_study(tmp_path / "s.yaml", DOC)
    assert study_main(["plan", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["runs"]) == 12 and doc["total"]["runs"] == 12
    run = doc["runs"][0]
    assert run["images"] == 10 * 8  # iters x global batch
    assert run["params"] > 1000 and run["flops_per_image"] > 0
    assert run["flops"] == pytest.approx(run["images"] * run["flops_per_image"])
    assert doc["total"]["images"] == 6 * (10 + 40) * 8
    t_runs = [r for r in doc["runs"] if r["axes"]["model.name"] == "swinv2-cpu-t"]
    s_runs = [r for r in doc["runs"] if r["axes"]["model.name"] == "swinv2-cpu-s"]
    assert s_runs[0]["flops_per_image"] > t_runs[0]["flops_per_image"]  # the bigger model costs more
    assert study_main(["plan", str(path), "--no-flops"]) == 0
    out = capsys.readouterr().out
    assert "12 runs = model.name (2) x data.fraction (3) x zip[train.iters, train.warmup_iters] (2)" in out
    assert "total: 12 runs, 2.4K images, n/a FLOPs" in out
    assert not (tmp_path / "runs").exists()


def test_clock_shows_hours_minutes_seconds():
    # (The study's ETA is study/progress.py's: tests/study/test_study_progress.py.)
    from mimscale.study.cost import clock

    assert clock(3725) == "1:02:05" and clock(None) == "-"


def test_a_copied_study_file_finds_the_packaged_base_config(tmp_path):
    # Issue 24: a study file copied out of the package keeps its "../pretrain/..." base_config; it is looked for
    # next to the copy first, then among the configs installed with the package.
    packaged = load_study("studies/cpu-small.yaml")
    copied = tmp_path / "mine" / "cpu-small.yaml"
    copied.parent.mkdir()
    copied.write_text((C.PACKAGED_CONFIGS / "studies" / "cpu-small.yaml").read_text())
    assert [r.id for r in load_study(copied).runs] == [r.id for r in packaged.runs]
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "swinv2-cpu.yaml").write_text("seed: 7\n")  # the copy's neighbour wins
    assert {r.cfg.seed for r in load_study(copied).runs} == {7}


def test_a_missing_base_config_says_where_it_was_looked_for(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text("base_config: nope.yaml\naxes: {seed: [1]}\n")
    with pytest.raises(StudyError) as e:
        load_study(study)
    assert str(e.value) == (f"base_config not found: nope.yaml (tried {tmp_path / 'nope.yaml'}, "
                            f"{C.PACKAGED_CONFIGS / 'nope.yaml'})")
