"""Run directory names a person can read (``rundir.run_dir_name``), found by run id whether readable or, as an
older mimscale wrote them, the id alone (``rundir.find_run_dir``, ``store.run_dir``, ``resolve_run_dir``)."""

import shutil
from pathlib import Path
from types import SimpleNamespace

from mimscale import config as C
from mimscale import rundir as R
from mimscale.study import load_study, store
from mimscale.train import resolve_run_dir

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "bbf7da2" / "study"


def _cfg(*overrides: str):
    return C.load_config(None, list(overrides))


def test_a_name_says_model_data_fraction_and_length_then_the_id():
    cfg = _cfg("model.name=vit-cpu-m", "data.fraction=0.1", "train.iters=2000")
    rid = C.run_id(cfg)
    assert R.run_label(cfg) == "vit-cpu-m_f0.1_it2000"
    assert R.run_dir_name(cfg, rid) == f"vit-cpu-m_f0.1_it2000-{rid}"
    assert R.run_id_of(R.run_dir_name(cfg, rid)) == rid
    assert R.run_label(_cfg("data.fraction=1.0", "train.epochs=1.5")) == "swinv2-cpu-s_f1_ep1.5"
    assert R.run_label(_cfg("data.fraction=0.0125", "train.samples=128000")) == "swinv2-cpu-s_f0.0125_s128000"


def test_a_name_is_filesystem_safe_and_short():
    odd = SimpleNamespace(model=SimpleNamespace(name="hf:org/some model " + "x" * 80),
                          data=SimpleNamespace(fraction=0.5), train=SimpleNamespace(iters=10, epochs=0, samples=0))
    label = R.run_label(odd)
    assert label == "hf-org-some-model-" + "x" * 14 + "_f0.5_it10"
    assert R.run_id_of(f"{label}-0123456789") == "0123456789"


def test_the_id_of_a_name_that_holds_none_is_the_name():
    assert R.run_id_of("5dc388ab45") == "5dc388ab45"  # an older study's directory: the id alone
    assert R.run_id_of("run000") == "run000"  # a directory named by hand
    assert R.run_id_of("my-run") == "my-run"
    assert R.run_id_of("-0123456789") == "-0123456789"


def test_find_run_dir_finds_old_and_new_names(tmp_path):
    (tmp_path / "0123456789").mkdir()
    (tmp_path / "vit-cpu-s_f1_it6-abcdefabcd").mkdir()
    (tmp_path / "vit-cpu-s_f1_it6-1111111111.txt").write_text("")  # not a directory
    assert R.find_run_dir(tmp_path, "0123456789") == tmp_path / "0123456789"
    assert R.find_run_dir(tmp_path, "abcdefabcd") == tmp_path / "vit-cpu-s_f1_it6-abcdefabcd"
    assert R.find_run_dir(tmp_path, "1111111111") is None
    assert R.find_run_dir(tmp_path / "missing", "0123456789") is None


def test_store_run_dir_keeps_an_old_study_s_names_and_names_new_runs(tmp_path):
    old = tmp_path / "old"
    shutil.copytree(FIXTURE / "dir", old)
    study = load_study(FIXTURE / "study-file.yaml")
    for run in study.runs:  # the bbf7da2 directories are found by id, with or without the run's config
        assert store.run_dir(old, run.id).name == run.id
        assert store.run_dir(old, run.id, run.cfg).name == run.id
    new = tmp_path / "new"
    run = study.runs[1]
    d = store.run_dir(new, run.id, run.cfg)
    assert d.name == f"vit-cpu-s_f1_it12-{run.id}" and not d.path.exists()
    d.path.mkdir(parents=True)
    assert store.run_dir(new, run.id).path == d.path  # found without the config once it exists


def test_a_standalone_run_gets_a_readable_directory_and_an_old_one_is_found(tmp_path):
    cfg = _cfg(f"out={tmp_path}", "model.name=vit-cpu-s", "data.fraction=0.5", "train.iters=4")
    rid = C.run_id(cfg)
    assert resolve_run_dir(cfg) == tmp_path / f"vit-cpu-s_f0.5_it4-{rid}"
    (tmp_path / rid).mkdir()
    assert resolve_run_dir(cfg) == tmp_path / rid
    assert resolve_run_dir(_cfg(f"out={tmp_path}", "name=mine", "train.iters=4")) == tmp_path / "mine"
