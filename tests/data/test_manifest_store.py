"""Manifests stored once per study: content-addressed bodies, small references in the run directories, race-free
writes, old inline manifests still read and verified. (The class split's equality with the old one is tested
in test_data_subsets.py.)"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest

from mimscale.data import (
    DataError,
    build_source,
    load_manifest,
    make_subsets,
    subset_command,
    verify_manifests,
    write_manifest,
)
from mimscale.data import subsets as S
from mimscale.data.manifest_store import BODY_FORMAT, write_body
from mimscale.rundir import MANIFESTS, manifest_store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bbf7da2"


def test_a_reference_points_to_a_shared_body_and_loads_as_the_whole_manifest(tmp_path):
    src = build_source("shapes:size=8,pool=100,seed=2,val_pool=30")
    m = make_subsets(src, [0.2], seed=4)[0]
    ref = write_manifest(tmp_path / "run" / "subset.json", m, store=tmp_path)
    raw = json.loads(ref.read_text())
    assert raw["format"] == S.REF_FORMAT and "ids" not in raw and "per_class" not in raw
    assert raw["sha256"] == m.sha256 and raw["num_ids"] == len(m.ids) == 20
    assert raw["body"].startswith(f"../{MANIFESTS}/") and raw["body"].endswith(".json.gz")
    body = tmp_path / "run" / raw["body"]
    assert json.loads(gzip.decompress(body.read_bytes()))["format"] == BODY_FORMAT
    back = load_manifest(ref)
    assert (back.ids, back.per_class, back.sha256, back.seed, back.fraction, back.source, back.holdout,
            back.num_source, back.split) == (m.ids, m.per_class, m.sha256, 4, 0.2, m.source, m.holdout,
                                             m.num_source, "train")  # fmt: skip
    # Another run with the same ids (another seed's 100%: the same images) shares the body; the reference keeps
    # the run's own seed.
    full = [make_subsets(src, [1.0], seed=s)[0] for s in (0, 1)]
    for s, fm in enumerate(full):
        write_manifest(tmp_path / f"full{s}" / "subset.json", fm, store=tmp_path)
    assert len(list((tmp_path / MANIFESTS).iterdir())) == 2
    assert [load_manifest(tmp_path / f"full{s}" / "subset.json").seed for s in (0, 1)] == [0, 1]
    # The same body written again is found, not rewritten.
    before = body.stat().st_mtime_ns
    write_manifest(tmp_path / "run2" / "subset.json", m, store=tmp_path)
    assert body.stat().st_mtime_ns == before and len(list((tmp_path / MANIFESTS).iterdir())) == 2


def test_a_missing_damaged_or_foreign_body_is_one_line(tmp_path):
    src = build_source("shapes:size=8,pool=100")
    m1, m2 = make_subsets(src, [0.2, 0.5], seed=1)
    r1 = write_manifest(tmp_path / "a" / "subset.json", m1, store=tmp_path)
    r2 = write_manifest(tmp_path / "b" / "subset.json", m2, store=tmp_path)
    b1 = tmp_path / "a" / json.loads(r1.read_text())["body"]
    # a reference pointed at another manifest's body
    d = json.loads(r1.read_text())
    d["body"] = json.loads(r2.read_text())["body"]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "subset.json").write_text(json.dumps(d))
    with pytest.raises(DataError, match="holds other ids"):
        load_manifest(tmp_path / "c" / "subset.json")
    # a body edited after it was written
    body = json.loads(gzip.decompress(b1.read_bytes()))
    body["ids"][0] = "shapes:0:99"
    b1.write_bytes(gzip.compress(json.dumps(body).encode()))
    with pytest.raises(DataError, match="does not match its name"):
        load_manifest(r1)
    b1.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable gzip file"):
        load_manifest(r1)
    # a run directory moved out of its study without the store
    b1.unlink()
    with pytest.raises(DataError, match="which is missing") as e:
        load_manifest(r1)
    assert str(e.value) == (f"{r1}: its ids are in {b1.resolve()}, which is missing (a run directory copied out "
                            f"of its study keeps only the reference: copy the study's manifests/ folder to "
                            f"{tmp_path.resolve()})")
    # a damaged body is replaced when the manifest is written again
    b1.write_bytes(b"damaged")
    write_manifest(r1, m1, store=tmp_path)
    assert load_manifest(r1).ids == m1.ids


def _write_same_body(args):
    store, ids, sha, rounds = args
    for _ in range(rounds):
        write_body(store, ids, sha, {"0": len(ids)})
    return True


def test_processes_writing_the_same_body_at_once_leave_one_intact_body(tmp_path):
    ids = [f"n{i % 97:08d}/img_{i}.JPEG" for i in range(30_000)]
    sha = S.ids_sha256(ids)
    with multiprocessing.get_context("fork").Pool(4) as pool:
        assert all(pool.map(_write_same_body, [(tmp_path, ids, sha, 5)] * 4))
    files = list((tmp_path / MANIFESTS).iterdir())
    assert len(files) == 1 and files[0].name.endswith(".json.gz")  # no temp file left behind
    body = json.loads(gzip.decompress(files[0].read_bytes()))
    assert body["ids"] == ids and body["sha256"] == sha


def test_ids_hash_in_pieces_as_one_string(monkeypatch):
    ids = [f"x{i}" for i in range(2_345)] + ["ü"]
    whole = __import__("hashlib").sha256("\n".join(ids).encode()).hexdigest()
    monkeypatch.setattr(S, "_HASH_CHUNK", 100)
    assert S.ids_sha256(ids) == whole
    assert S.ids_sha256([]) == __import__("hashlib").sha256(b"").hexdigest()


def test_the_store_of_a_run_is_its_study_else_itself(tmp_path):
    study = tmp_path / "study"
    (study / "runs" / "abc").mkdir(parents=True)
    (study / "study.yaml").write_text("name: s\n")
    (study / "locks").mkdir()
    assert manifest_store(study / "runs" / "abc") == study
    assert manifest_store(tmp_path / "runs" / "plain") == tmp_path / "runs" / "plain"  # pretrain's default out
    assert manifest_store(tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_a_run_given_as_dot_inside_a_study_still_shares_the_study_store(tmp_path, monkeypatch):
    study = tmp_path / "study"
    (study / "runs" / "abc").mkdir(parents=True)
    (study / "locks").mkdir()
    (study / "study.yaml").write_text("name: s\n")
    monkeypatch.chdir(study / "runs" / "abc")
    assert manifest_store(".") == study.resolve()


def test_a_run_reached_through_a_symlinked_study_finds_its_body(tmp_path):
    # HPC scratch space is often a link: the reference must point where the system goes, not where the text says.
    study = tmp_path / "phys" / "deep" / "study"
    (study / "runs" / "r").mkdir(parents=True)
    (study / "locks").mkdir()
    (study / "study.yaml").write_text("name: s\n")
    (tmp_path / "sym").mkdir()
    (tmp_path / "sym" / "link").symlink_to(study)
    run = tmp_path / "sym" / "link" / "runs" / "r"
    m = make_subsets(build_source("shapes:size=8,pool=50,seed=0"), [0.5], seed=0)[0]
    ref = write_manifest(run / "subset.json", m, store=manifest_store(run))
    assert json.loads(ref.read_text())["body"].startswith(f"../../{MANIFESTS}/")
    assert load_manifest(ref).ids == m.ids


def test_a_users_own_study_yaml_beside_a_plain_runs_folder_is_not_a_study(tmp_path):
    (tmp_path / "runs" / "plain").mkdir(parents=True)
    (tmp_path / "study.yaml").write_text("name: mine\n")  # the user's study file, no study directory
    assert manifest_store(tmp_path / "runs" / "plain") == (tmp_path / "runs" / "plain").resolve()


def test_subset_command_with_a_store_and_verify(tmp_path, capsys):
    from mimscale.cli import main

    out = tmp_path / "subs"
    assert main(["data", "subset", "digits:size=8", "--fractions", "0.1,0.5,1", "--out", str(out),
                 "--store", str(out)]) == 0  # fmt: skip
    names = sorted(p.name for p in out.iterdir())
    assert names == ["heldout.json", MANIFESTS, "subset_0.1.json", "subset_0.5.json", "subset_1.json"]
    assert len(list((out / MANIFESTS).iterdir())) == 4
    assert all((out / n).stat().st_size < 1500 for n in names if n.endswith(".json"))
    capsys.readouterr()
    assert main(["data", "verify", str(out)]) == 0
    assert "4 manifests verified" in capsys.readouterr().out
    # the same manifests written whole: the same verification, the same ids
    whole = tmp_path / "whole"
    subset_command("digits:size=8", "0.1,0.5,1", out=whole)
    for n in ("heldout.json", "subset_0.1.json", "subset_1.json"):
        assert load_manifest(whole / n).ids == load_manifest(out / n).ids


def test_old_inline_manifests_still_load_and_verify(tmp_path):
    for rel in ("pretrain", "study/dir/runs/5dc388ab45", "study/dir/runs/22a845d97b"):
        run = tmp_path / rel.replace("/", "_")
        shutil.copytree(FIXTURES / rel, run)
        assert json.loads((run / "subset.json").read_text())["format"] == S.FORMAT
        assert load_manifest(run / "subset.json").ids
        report = verify_manifests(run)
        assert [r["file"] for r in report["manifests"]] == ["heldout.json", "subset.json"]


def test_an_inline_manifest_with_ids_that_are_not_a_list_of_strings_is_one_line(tmp_path):
    m = make_subsets(build_source("shapes:size=8,pool=100"), [0.2], seed=1)[0]
    p = write_manifest(tmp_path / "subset.json", m)
    d = json.loads(p.read_text())
    for bad in (None, "shapes:0:1", [1, 2]):
        p.write_text(json.dumps({**d, "ids": bad}))
        with pytest.raises(DataError, match="must be a list of strings"):
            load_manifest(p)


def test_plan_data_takes_a_reference_as_its_manifest(tmp_path):
    from mimscale.data import plan_data

    plan = plan_data("shapes:size=8,pool=100,seed=2,val_pool=30", fraction=0.2, seed=4)
    ref = write_manifest(tmp_path / "run" / "subset.json", plan.manifest, store=tmp_path)
    again = plan_data(manifest=ref)
    np.testing.assert_array_equal(again.train_indices, plan.train_indices)
    assert again.manifest.sha256 == plan.manifest.sha256 and again.val_manifest.sha256 == plan.val_manifest.sha256
