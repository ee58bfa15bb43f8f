"""The manifests pre-training writes: the runs of a study share one stored id list per subset (and one for the
held-out set) and keep small references; a run outside a study keeps its own store; an old run directory
with whole manifests resumes and still verifies."""

import importlib.util
import json
import shutil
from pathlib import Path

from mimscale.cli import main
from mimscale.data import load_manifest
from mimscale.data.subsets import FORMAT, REF_FORMAT
from mimscale.rundir import MANIFESTS, RunDir

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bbf7da2"
TINY = ["model.name=swinv2-cpu-t", "data.source=shapes:size=32,pool=64,seed=0,val_pool=16", "data.val_size=16",
        "data.probe_size=8", "train.batch_size=8", "train.eval_points=1", "train.recon_images=0", "threads=1",
        "train.warmup_iters=1", "train.schedule=step"]


def _verified(run: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["data", "verify", str(run)]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_the_runs_of_a_study_share_their_manifest_bodies(tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.yaml").write_text("name: shared\n")  # study.yaml and locks/: what makes runs/<id>/ a study's run
    (study / "locks").mkdir()
    runs = [RunDir(study / "runs" / name) for name in ("a", "b")]
    for run, iters in zip(runs, (1, 2)):  # two runs of one data subset (a grid's other axes)
        assert main(["pretrain", *TINY, f"train.iters={iters}", f"run_dir={run.path}"]) == 0
    bodies = sorted((study / MANIFESTS).iterdir())
    assert len(bodies) == 2  # the subset and the held-out set, once for both runs
    for run in runs:
        assert not (run.path / MANIFESTS).exists()
        for path in (run.subset, run.heldout):
            ref = json.loads(path.read_text())
            assert ref["format"] == REF_FORMAT and path.stat().st_size < 1500
            assert (path.parent / ref["body"]).resolve() in bodies
        assert "2 manifests verified" in _verified(run.path, capsys)
    assert load_manifest(runs[0].subset).ids == load_manifest(runs[1].subset).ids
    assert len(load_manifest(runs[0].subset).ids) == 64

    plain = RunDir(tmp_path / "runs" / "plain")  # pretrain's default out=runs: no study above it
    assert main(["pretrain", *TINY, "train.iters=1", f"run_dir={plain.path}"]) == 0
    assert len(list((plain.path / MANIFESTS).iterdir())) == 2 and not (tmp_path / MANIFESTS).exists()
    assert json.loads(plain.subset.read_text())["body"].startswith(f"{MANIFESTS}/")


def test_an_old_run_with_whole_manifests_verifies_resumes_and_verifies_again(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_bbf7da2_fixtures", FIXTURES / "make_fixtures.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    run = tmp_path / "pretrain"
    shutil.copytree(FIXTURES / "pretrain", run)
    assert json.loads((run / "subset.json").read_text())["format"] == FORMAT
    ids = load_manifest(run / "subset.json").ids
    assert "2 manifests verified" in _verified(run, capsys)
    assert main(["pretrain", *maker.PRETRAIN, f"run_dir={run}"]) == 0  # resumes from its step-4 checkpoint
    assert json.loads((run / "subset.json").read_text())["format"] == REF_FORMAT  # rewritten as a reference
    assert load_manifest(run / "subset.json").ids == ids
    assert "2 manifests verified" in _verified(run, capsys)
