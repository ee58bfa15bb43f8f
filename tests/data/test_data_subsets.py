"""Nested, stratified, seeded subsets; held-out split; manifests and their verification."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimscale.data import (
    DataError,
    build_source,
    holdout_split,
    ids_sha256,
    load_manifest,
    make_subsets,
    parse_fractions,
    plan_data,
    probe_indices,
    subset_command,
    subset_indices,
    verify_command,
    verify_manifests,
    write_manifest,
)
from mimscale.data import subsets as S


class Stub:
    """Ids + labels only: all that subsets need."""

    def __init__(self, labels, labelled=True):
        self._labels = np.asarray(labels, dtype=np.int64) if labelled else None
        self.ids = [f"img/{i:05d}" for i in range(len(labels))]

    def labels(self):
        return self._labels

    def describe(self):
        return {"kind": "stub"}

    def validation(self):
        return None


sources = st.builds(
    Stub,
    st.lists(st.integers(0, 6), min_size=1, max_size=300),
    st.booleans(),
)
fraction_lists = st.lists(st.floats(0.01, 1.0), min_size=1, max_size=5)


def _old_classes(labels, pool):
    """The class split as it was before it became one stable sort (kept here as the reference)."""
    if labels is None:
        return {-1: pool}
    lab = np.asarray(labels)[pool]
    return {int(c): pool[lab == c] for c in np.unique(lab)}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=400), st.integers(0, 2**31),
       st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4))  # fmt: skip
def test_the_class_split_selects_exactly_what_the_old_one_did(labels, seed, fractions):
    src = Stub(labels)
    pool = np.sort(np.random.default_rng(seed).choice(len(labels), max(1, len(labels) // 2), replace=False))
    new, old = S._classes(src.labels(), pool), _old_classes(src.labels(), pool)
    assert list(new) == list(old)
    for c in old:
        np.testing.assert_array_equal(new[c], old[c])
    now = _outcome(src, fractions, seed)
    original = S._classes
    S._classes = _old_classes
    try:
        before = _outcome(src, fractions, seed)
    finally:
        S._classes = original
    assert now == before


def _outcome(src, fractions, seed):
    """The manifests' hashes and counts, or the error (a tiny source may select nothing)."""
    try:
        manifests = make_subsets(src, fractions, seed, holdout=0.2)
    except DataError as e:
        return str(e)
    for m in manifests:  # per-class counts as np.unique gave them before they were counted by bincount
        cls, counts = np.unique(src.labels()[[int(i[4:]) for i in m.ids]], return_counts=True)
        assert m.per_class == {str(int(c)): int(k) for c, k in zip(cls, counts)}
    return [(m.split, m.fraction, m.sha256, m.per_class) for m in manifests]


def test_known_selections_are_unchanged():
    """Hashes recorded with the code of commit 564f469, before the class split became one stable sort."""
    src = build_source("shapes:size=8,pool=100,seed=2")
    got = {f"{m.split}:{m.fraction}": m.sha256[:16] for m in make_subsets(src, [0.1, 0.5, 1], seed=3)}
    assert got == {"train:0.1": "8a382cfc3e0be6d3", "train:0.5": "22940c5ca5edacfb", "train:1.0": "15112b5255949e28"}
    digits = build_source("digits:size=8")
    got = {f"{m.split}:{m.fraction}": m.sha256[:16]
           for m in make_subsets(digits, [0.1, 1], seed=3, holdout=0.2, holdout_seed=1)}  # fmt: skip
    assert got == {"train:0.1": "6ab74a126514ea7a", "train:1.0": "32c8f4862b4cd1e0", "heldout:None": "cbcc4ed80cc13abc"}
    _, val = holdout_split(Stub([i % 7 for i in range(1000)]), 0.1, seed=5)
    assert S.ids_sha256([str(i) for i in val])[:16] == "f5fcc7d20ba2b33b"


@settings(max_examples=60, deadline=None)
@given(sources, fraction_lists, st.integers(0, 2**31))
def test_subsets_are_nested(src, fractions, seed):
    fractions = sorted(fractions)
    subsets = []
    for f in fractions:
        try:
            subsets.append(set(subset_indices(src, f, seed).tolist()))
        except DataError:  # a fraction too small to select anything
            subsets.append(set())
    for small, big in zip(subsets, subsets[1:]):
        assert small <= big
    assert subsets[-1] <= set(range(len(src.ids)))
    if fractions[-1] == 1.0:
        assert subsets[-1] == set(range(len(src.ids)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=300), st.floats(0.01, 1.0), st.integers(0, 2**31))
def test_subsets_are_stratified_within_one_image(labels, fraction, seed):
    src = Stub(labels)
    labels = np.asarray(labels)
    try:
        picked = subset_indices(src, fraction, seed)
    except DataError:
        picked = np.array([], dtype=np.int64)
    for c in np.unique(labels):
        n_c = int((labels == c).sum())
        got = int((labels[picked] == c).sum())
        assert abs(got - fraction * n_c) <= 1.0, (c, got, fraction * n_c)


@settings(max_examples=40, deadline=None)
@given(sources, st.one_of(st.floats(0.05, 0.5), st.integers(1, 20)), st.integers(0, 1000), fraction_lists)
def test_holdout_is_disjoint_from_every_training_subset(src, holdout, seed, fractions):
    n = len(src.ids)
    if n < 2 or (isinstance(holdout, int) and holdout >= n):
        return
    try:
        train, val = holdout_split(src, holdout, seed)
    except DataError as e:  # per-class rounding put every image on one side (tiny classes)
        assert "empty split" in str(e)
        return
    assert len(val) >= 1 and len(train) >= 1
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(n))
    try:
        manifests = make_subsets(src, fractions, seed=seed + 1, holdout=holdout, holdout_seed=seed)
    except DataError as e:  # a tiny pool where some fraction selects nothing
        assert "selects no image" in str(e)
        return
    for m in manifests:
        if m.split == "train":
            assert not set(m.ids) & {src.ids[i] for i in val}
        else:
            assert m.ids == [src.ids[i] for i in val]


CASES = [
    ([i % 7 for i in range(257)], 0.1, 0),
    ([i % 3 for i in range(100)], 0.5, 123),
    ([0] * 40, 0.25, 2**31 - 1),
]
_CHILD = """
import json, sys
import numpy as np
from mimscale.data import ids_sha256, subset_indices, holdout_split
class Stub:
    def __init__(self, labels):
        self._l = np.asarray(labels); self.ids = [f"img/{i:05d}" for i in range(len(labels))]
    def labels(self): return self._l
out = []
for labels, f, seed in json.loads(sys.argv[1]):
    s = Stub(labels)
    sub = subset_indices(s, f, seed)
    tr, va = holdout_split(s, 0.2, seed)
    out.append([ids_sha256([s.ids[i] for i in sub]), ids_sha256([s.ids[i] for i in va])])
print(json.dumps(out))
"""


@pytest.mark.parametrize("hashseed", ["0", "4242"])
def test_same_subsets_in_other_processes_and_hash_seeds(hashseed):
    here = []
    for labels, f, seed in CASES:
        s = Stub(labels)
        here.append([ids_sha256([s.ids[i] for i in subset_indices(s, f, seed)]),
                     ids_sha256([s.ids[i] for i in holdout_split(s, 0.2, seed)[1]])])  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    res = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(CASES)], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert json.loads(res.stdout) == here
    # and the seed matters
    s = Stub(CASES[0][0])
    assert list(subset_indices(s, 0.1, 0)) != list(subset_indices(s, 0.1, 1))


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.1", "0.1,abc", "", "nan"])
def test_bad_fractions_are_data_errors(bad):
    with pytest.raises(DataError):
        parse_fractions(bad)


def test_parse_fractions_sorts_and_dedups():
    assert parse_fractions("1,0.5,0.1,0.2,0.5") == [0.1, 0.2, 0.5, 1.0]


def test_probe_is_fixed_and_inside():
    idx = np.arange(100, 200)
    p = probe_indices(idx, 10, seed=3)
    assert len(p) == 10 and set(p) <= set(idx)
    np.testing.assert_array_equal(p, probe_indices(idx[::-1], 10, seed=3))
    assert len(probe_indices(idx, 500)) == 100


def test_manifests_roundtrip_and_verify(tmp_path, helpers):
    helpers.make_folder(tmp_path / "data", classes=4, per_class=10, w=16, h=16)
    report = subset_command(str(tmp_path / "data"), "0.1,0.2,0.5,1", seed=0, out=tmp_path / "m")
    assert "subset_0.1.json" in report
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["heldout.json", "subset_0.1.json", "subset_0.2.json", "subset_0.5.json", "subset_1.json"]
    ms = {n: load_manifest(tmp_path / "m" / n) for n in names}
    held = set(ms["heldout.json"].ids)
    assert len(held) == 4  # 10% of each class
    assert len(ms["subset_1.json"].ids) == 36 and not held & set(ms["subset_1.json"].ids)
    assert ms["subset_0.5.json"].per_class == {"0": 5, "1": 5, "2": 5, "3": 5}  # 4.5 rounds half up
    raw = json.loads((tmp_path / "m" / "subset_0.1.json").read_text())
    assert raw["sha256"] == ids_sha256(raw["ids"]) and raw["seed"] == 0 and raw["fraction"] == 0.1
    assert raw["source"]["kind"] == "folder" and raw["num_ids"] == len(raw["ids"])
    r = verify_manifests(tmp_path / "m")
    assert r["nested"] and r["disjoint"] and len(r["manifests"]) == 5
    assert "5 manifests verified" in verify_command(tmp_path / "m")


def test_verify_catches_tampering(tmp_path):
    src = build_source("shapes:size=8,pool=100")
    paths = [write_manifest(tmp_path / m.filename, m) for m in make_subsets(src, [0.2, 0.5], seed=1)]
    verify_manifests(tmp_path)
    d = json.loads(paths[0].read_text())
    d["ids"][0] = "shapes:0:99"  # edited without updating the hash
    paths[0].write_text(json.dumps(d))
    with pytest.raises(DataError, match="sha256 mismatch"):
        verify_manifests(tmp_path)
    d["sha256"] = ids_sha256(d["ids"])  # consistent hash, but not what the seed derives
    paths[0].write_text(json.dumps(d))
    with pytest.raises(DataError, match="re-derived"):
        verify_manifests(tmp_path)
    with pytest.raises(DataError, match="no subset manifests"):
        verify_manifests(tmp_path / "nothing_here") if False else verify_manifests(_empty(tmp_path))
    with pytest.raises(DataError, match="not found"):
        load_manifest(tmp_path / "missing.json")


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_plan_data_builtin_val_and_manifest(tmp_path):
    plan = plan_data("shapes:size=8,pool=100,seed=2,val_pool=30", fraction=0.2, seed=4)
    assert len(plan.train_indices) == 20 and len(plan.val_indices) == 30
    assert plan.manifest.per_class == {str(c): 2 for c in range(10)}
    assert not set(plan.manifest.ids) & set(plan.val_manifest.ids)
    p = write_manifest(tmp_path / "subset.json", plan.manifest)
    again = plan_data(manifest=p)
    np.testing.assert_array_equal(again.train_indices, plan.train_indices)
    assert again.val_manifest.sha256 == plan.val_manifest.sha256
    with pytest.raises(DataError, match="made for source"):
        plan_data("shapes:size=8,pool=100,seed=3", manifest=p)


def test_plan_data_holdout_for_sources_without_val():
    plan = plan_data("digits:size=8", fraction=0.5, seed=0, holdout=0.2, holdout_seed=7)
    assert plan.val_source is plan.source
    assert not set(plan.train_indices.tolist()) & set(plan.val_indices.tolist())
    assert abs(len(plan.val_indices) - 0.2 * 1797) <= 10
    other = plan_data("digits:size=8", fraction=0.1, seed=5, holdout=0.2, holdout_seed=7)
    np.testing.assert_array_equal(other.val_indices, plan.val_indices)  # independent of subset seed


def test_cli_subset_and_verify(tmp_path, capsys):
    from mimscale.cli import main

    out = tmp_path / "subs"
    assert main(["data", "subset", "shapes:size=8,pool=100", "--fractions", "0.1,0.5,1", "--seed", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["subset_0.1.json", "subset_0.5.json", "subset_1.json"]
    assert main(["data", "verify", str(out)]) == 0
    assert "3 manifests verified" in capsys.readouterr().out
    assert (
        main(["data", "subset", "digits:size=8", "--fractions", "0,0.5", "--out", str(tmp_path / "x")]) == 2
    )
    assert capsys.readouterr().err.strip() == "mimscale data: error: fraction must be in (0, 1], got 0"
    d = json.loads((out / "subset_0.5.json").read_text())
    d["ids"] = d["ids"][1:]
    (out / "subset_0.5.json").write_text(json.dumps(d))
    assert main(["data", "verify", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "sha256 mismatch" in err and len(err.splitlines()) == 1
