"""Real-shaped grids: unbalanced, replicated, two datasets; planted findings present and absent, and the
regressions of the issue (different-range gains, the inverted 'weakest', sub-0.005 rises, the fit at
its bound printed as a value, the slow fit)."""

import json
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from paper_grid import FULL, LARGE_SIZE, SWIN, paper_grid
from synth_results import make_study_dir

from mimscale.analysis import analyze, results_table
from mimscale.analysis.correlation import weakest, weakest_words
from mimscale.analysis.datasets import assign_series, choose_primary
from mimscale.analysis.results import ResultsError, clean_runs, dataset_name
from mimscale.cli import main

FAST = {"n_boot": 200, "fit_boot": 50}
MODELS = list(SWIN)


def _analyze(tmp_path, df, **kw):
    df.to_csv(tmp_path / "r.csv", index=False)
    return analyze(tmp_path / "r.csv", write=False, **{**FAST, **kw})


def _finding(res, name):
    return next(f for f in res["paper_findings"] if f["finding"].startswith(name))


@pytest.fixture(scope="module")
def grid_res(tmp_path_factory):
    return _analyze(tmp_path_factory.mktemp("g"), paper_grid())


# --- datasets ---------------------------------------------------------------------------------------

def test_the_grid_is_shaped_like_the_published_one():
    df = paper_grid()
    assert len(df) == 63 and df["dataset"].value_counts().to_dict() == {"in1k": 51, "in22k": 12}
    assert not ((df["model"] == "swinv2-g") & (df["data_size"] < FULL / 2)).any()
    assert not ((df["model"] == "swinv2-S") & (df["dataset"] == "in22k")).any()
    # every held-out loss is on in1k's validation set: in22k's sit above the full in1k's
    full = df[df["data_size"] == FULL].set_index(["model", "iters"])["val_loss"]
    big = df[df["data_size"] == LARGE_SIZE].set_index(["model", "iters"])["val_loss"]
    assert (big > full.loc[big.index]).all()


@pytest.mark.parametrize("source, name", [
    ("shapes:size=32,pool=1000,seed=0", "shapes:size=32,pool=1000,seed=0"),
    ("shapes:size=32,fraction=0.5,pool=1000", "shapes:size=32,pool=1000"),
    ("folder:/data/in1k", "folder:/data/in1k"),
    ({"kind": "shapes", "fraction": 0.1, "pool": 10}, "kind=shapes,pool=10"),
    (None, None)])
def test_dataset_name_drops_the_fraction(source, name):
    assert dataset_name(source) == name


def test_study_dataset_comes_from_the_config(tmp_path):
    study = make_study_dir(tmp_path / "s")
    for i, cfg_path in enumerate(sorted(study.glob("runs/run*/config.yaml"))):
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["data"]["source"] = "shapes:size=32,pool=1000" if i % 4 else "shapes:size=32,pool=5000"
        cfg_path.write_text(yaml.safe_dump(cfg))
    table = results_table(study)
    assert set(table["dataset"].dropna()) == {"shapes:size=32,pool=1000", "shapes:size=32,pool=5000"}
    runs, _ = clean_runs(table)
    _, info = assign_series(runs)
    assert info["primary"] == "shapes:size=32,pool=1000" and info["primary_basis"] == "the dataset with the most runs"


def test_primary_dataset_choice(tmp_path):
    runs, _ = clean_runs(paper_grid())
    assert choose_primary(runs) == ("in1k", "the dataset with the most runs")
    assert choose_primary(runs, "in22k") == ("in22k", "--primary-dataset")
    with pytest.raises(ResultsError, match="not in the results"):
        choose_primary(runs, "in21k")
    g = runs[runs["model"] == "swinv2-g"]
    tie = pd.concat([g[g["dataset"] == "in1k"].head(3), g[g["dataset"] == "in22k"]])  # 3 runs each
    assert choose_primary(tie) == ("in1k", "the dataset with the most runs (a tie, broken by name)")


def test_cli_primary_and_same_distribution(tmp_path, capsys):
    paper_grid().to_csv(tmp_path / "r.csv", index=False)
    base = ["analyze", str(tmp_path / "r.csv"), "--out", str(tmp_path / "t"), "--n-boot", "50", "--fit-boot", "5"]
    assert main([*base, "--primary-dataset", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--primary-dataset 'nope' is not in the results" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["primary_dataset"] == "in1k" and doc["config"]["same_distribution"] is False
    assert [d["name"] for d in doc["datasets"]] == ["in1k", "in22k"]
    assert "Primary dataset in1k: the dataset with the most runs" in doc["summary"][0]
    b_fits = [f for f in doc["fits"]["per_model"] if f["model"] == "swinv2-B"]
    assert {f["series"] for f in b_fits} == {"in1k"} and {f["n_sizes"] for f in b_fits} == {4}
    assert main([*base, "--json", "--same-distribution"]) == 0
    doc = json.loads(capsys.readouterr().out)
    b_fits = [f for f in doc["fits"]["per_model"] if f["model"] == "swinv2-B"]
    assert doc["config"]["same_distribution"] is True and {f["n_sizes"] for f in b_fits} == {5}


# --- more data helps larger models more -------------------------------------------------------------

def test_gains_are_compared_over_the_shared_sizes(grid_res):
    rows = [r for r in grid_res["data_gain"] if r["iters"] == 500_000]
    assert {r["series"] for r in rows} == {"in1k"}  # in22k (one size) is not on in1k's axis
    assert {(r["d_min"], r["d_max"]) for r in rows} == {(640_584.0, float(FULL))}
    by = {r["model"]: r for r in rows}
    # Regression: over each model's own range the gains do not grow (the smallest model starts at 10%,
    # the largest at 50%): the old criterion said 'no'.
    assert by["swinv2-S"]["own_gain"] > by["swinv2-g"]["own_gain"]
    f = _finding(grid_res, "more data")
    assert f["verdict"] == "yes" and list(f["numbers"]["gain_by_model"]) == MODELS
    assert "640,584, 1,281,167 images of in1k" in f["text"]
    assert any("in22k (14,197,122 images) is its own series" in s for s in grid_res["summary"])


def test_gain_not_growing_is_not_claimed(tmp_path):
    res = _analyze(tmp_path, paper_grid(gain_grows=False))
    f = _finding(res, "more data")
    gains = list(f["numbers"]["gain_by_model"].values())
    assert f["verdict"] == "no" and gains[-1] < gains[0]


def test_a_model_with_one_size_is_not_compared(tmp_path):
    df = paper_grid()
    res = _analyze(tmp_path, df[~((df["model"] == "swinv2-g") & (df["data_fraction"] == 0.5))])
    g = [r for r in res["data_gain"] if r["model"] == "swinv2-g"]
    assert g and all(r["gain"] is None and r["message"].startswith("fewer than 2") for r in g)
    f = _finding(res, "more data")
    assert "Not compared (fewer than 2 sizes here): swinv2-g" in f["text"] and f["verdict"] == "yes"
    assert "swinv2-g" not in f["numbers"]["gain_by_model"]


def test_no_shared_range_gives_a_message(tmp_path):
    df = paper_grid()
    res = _analyze(tmp_path, df[~((df["model"] == "swinv2-S") & (df["data_fraction"] == 0.5))])  # S, g share 100%
    rows = [r for r in res["data_gain"] if r["series"] == "in1k"]
    assert rows and all("share 1 data size" in r["message"] and r["gain"] is None for r in rows)
    f = _finding(res, "more data")
    assert f["verdict"] == "n/a" and "share 1 data size" in f["text"]


# --- overfitting ------------------------------------------------------------------------------------

def test_sub_0005_rises_on_a_045_scale_are_flagged(grid_res):
    cfg = grid_res["config"]
    assert cfg["tolerance_source"] == "loss scale" and cfg["tolerance"] == pytest.approx(0.002 * 0.43, rel=0.05)
    assert "0.2% of the median held-out loss" in cfg["tolerance_basis"]
    flagged = [r for r in grid_res["rises"] if r["flag"]]
    # Regression: all planted rises are below the old absolute tolerance 0.005, and all are flagged now.
    assert flagged and all(0.0008 < r["rise_vs_shorter"] < 0.005 for r in flagged)
    at_longest = {(r["model"], r["data_size"]) for r in flagged if r["iters"] == 500_000}
    assert at_longest == {("swinv2-S", 128_117), ("swinv2-B", 128_117), ("swinv2-L", 128_117),
                          ("swinv2-B", 256_233), ("swinv2-L", 256_233), ("swinv2-H", 256_233),
                          ("swinv2-g", 640_584)}
    # Every rise is listed, flagged or not, with its size.
    small = [r for r in grid_res["rises"] if not r["flag"]]
    assert small and all(0 < r["rise_vs_shorter"] <= cfg["tolerance"] for r in small)
    assert "Every rise of the held-out loss" in " ".join(grid_res["summary"])


def test_the_published_shape_of_overfitting_is_recognised(grid_res):
    """The issue's grid: the rises at the smallest fraction are larger for the smaller models (the old rule,
    'rises grow with size at every size', said 'partly'), while the onset grows with size, nothing rises on
    the full data and the top-1 falls with the rise for the larger models only."""
    f = _finding(grid_res, "overfitting")
    n = f["numbers"]
    at_10 = n["rises_by_size"]["128117"]
    assert at_10["swinv2-S"] > at_10["swinv2-B"] > at_10["swinv2-L"] > 0
    assert n["onset_by_model"] == {"swinv2-S": 128_117, "swinv2-B": 256_233, "swinv2-L": 256_233,
                                   "swinv2-H": 256_233, "swinv2-g": 640_584}
    assert n["onset_moves_to_more_data"] and n["flagged_full"] == 0 and n["flagged_small"] == 7
    # The smaller models' top-1 does not fall (fine-tuning recovers it): 4 of 7 over all, 4 of 4 for the larger.
    assert (n["metric_fell"], n["metric_compared"]) == (4, 7)
    assert n["metric_models"] == ["swinv2-L", "swinv2-H", "swinv2-g"]
    assert (n["metric_fell_larger"], n["metric_compared_larger"]) == (4, 4)
    assert f["verdict"] == "yes" and "moves to more data as models grow" in f["text"]
    assert "nan" not in f["text"]


@pytest.mark.parametrize("seeds", [1, 2])
@pytest.mark.parametrize("tolerance", [None, 0.0])
def test_the_paper_shape_is_yes_at_any_tolerance_and_seeds(tmp_path, seeds, tolerance):
    res = _analyze(tmp_path, paper_grid(seeds=seeds), tolerance=tolerance)
    f = _finding(res, "overfitting")
    assert f["verdict"] == "yes", f["text"]
    assert [x["verdict"] for x in res["paper_findings"]] == ["yes", "yes", "yes"]
    if seeds == 2 and tolerance is None:
        # swinv2-g's 50% rise (0.0009) is within the seed tolerance; it was not run at 20%, where swinv2-H
        # still rises, so whether its onset is below swinv2-H's is undecided, not a violation.
        assert f["numbers"]["onset_by_model"]["swinv2-g"] is None
        assert ["swinv2-H", "swinv2-g"] in f["numbers"]["onset_undecided"] and "undecided" in f["text"]
    if tolerance == 0.0:
        assert f["numbers"]["onset_by_model"]["swinv2-H"] == 640_584


@pytest.mark.parametrize("seeds", [1, 2])
@pytest.mark.parametrize("twin, verdict, words", [
    (False, "no", "No rise above the tolerance"),
    ("wrong_way", "partly", "swinv2-L after swinv2-S"),
    ("full", "partly", "on the largest size.")])
def test_planted_absent_twins_are_not_yes(tmp_path, twin, verdict, words, seeds):
    res = _analyze(tmp_path, paper_grid(overfit=twin, seeds=seeds))
    f = _finding(res, "overfitting")
    assert f["verdict"] == verdict and words in f["text"], f["text"]
    if twin == "full":
        assert f["numbers"]["flagged_full"] == 5
    if twin == "wrong_way":
        assert not f["numbers"]["onset_moves_to_more_data"]
        assert ["swinv2-S", "swinv2-g"] in f["numbers"]["onset_violations"]
    if twin is False:
        assert not any(r["flag"] for r in res["overfitting"])


def test_metric_not_falling_for_the_larger_models_is_only_partly(tmp_path):
    df = paper_grid()
    big = df["model"].isin(["swinv2-L", "swinv2-H", "swinv2-g"])
    df.loc[big, "eval_finetune_top1"] += 0.01 * np.log2(df.loc[big, "iters"] / 125_000)  # top-1 keeps rising
    f = _finding(_analyze(tmp_path, df), "overfitting")
    assert f["verdict"] == "partly" and f["numbers"]["metric_fell_larger"] == 0
    assert "fell with the rise in 0 of 4 flagged setting(s) of the larger models" in f["text"]


@pytest.mark.parametrize("tolerance, n_flagged", [(0.005, 0), (0.0, 16)])
def test_tolerance_override(tmp_path, tolerance, n_flagged):
    res = _analyze(tmp_path, paper_grid(), tolerance=tolerance)
    assert sum(r["flag"] for r in res["rises"]) == n_flagged and len(res["rises"]) == 16
    assert res["config"]["tolerance_source"] == "user"
    assert ("every rise is flagged" in res["config"]["tolerance_basis"]) == (tolerance == 0)


def test_negative_tolerance_is_refused(tmp_path, capsys):
    paper_grid().to_csv(tmp_path / "r.csv", index=False)
    assert main(["analyze", str(tmp_path / "r.csv"), "--tolerance", "-0.1"]) == 2
    assert "--tolerance must be >= 0" in capsys.readouterr().err


def test_tolerance_from_replicate_seeds(tmp_path):
    res = _analyze(tmp_path, paper_grid(seeds=2, seed_sd=0.0004))
    cfg = res["config"]
    assert cfg["tolerance_source"] == "seeds" and "63 setting(s) with >= 2 seeds" in cfg["tolerance_basis"]
    assert cfg["tolerance"] == pytest.approx(2 * np.sqrt(2) * 0.0004, rel=0.25)
    assert res["n_runs"] == 126 and res["n_settings"] == 63
    assert _finding(res, "overfitting")["verdict"] == "yes"


# --- correlation ------------------------------------------------------------------------------------

def test_weakest_is_the_correlation_least_in_the_expected_direction():
    rows = [{"group": "a", "spearman": -0.99, "expected_sign": "negative"},
            {"group": "b", "spearman": -0.60, "expected_sign": "negative"},
            {"group": "c", "spearman": -0.95, "expected_sign": "negative"}]
    assert weakest(rows)["group"] == "b"
    pos = [{"group": "a", "spearman": 0.9, "expected_sign": "positive"},
           {"group": "b", "spearman": 0.3, "expected_sign": "positive"}]
    assert weakest(pos)["group"] == "b"
    wrong = rows + [{"group": "d", "spearman": 0.2, "expected_sign": "negative"}]
    assert weakest(wrong)["group"] == "d"  # the wrong sign is weaker than any right-signed one
    # All of the wrong sign (a frozen probe that does not follow the loss): the weakest is the most positive,
    # which is not "closest to zero"; the words say what it is.
    positive = [{"group": "s", "spearman": 0.07, "expected_sign": "negative"},
                {"group": "m", "spearman": 0.80, "expected_sign": "negative"}]
    assert weakest(positive)["group"] == "m" and weakest_words(weakest(positive)) == "least negative"
    assert weakest_words(pos[0]) == "least positive"


def test_summary_names_the_planted_weak_model(tmp_path):
    res = _analyze(tmp_path, paper_grid(weak_model="swinv2-H"))
    per = {r["group"]: r["spearman"] for r in res["correlation"] if r["group"] != "all"}
    assert max(per, key=per.get) == "swinv2-H"  # least negative
    text = " ".join(res["summary"])
    assert f"weakest (least negative) for swinv2-H (Spearman {per['swinv2-H']:.2f}" in text
    strongest = min(per, key=per.get)
    assert f"strongest for {strongest}" in text and strongest != "swinv2-H"
    f = _finding(res, "validation loss")
    assert f["weakest_model"] == {"eval_finetune_top1": "swinv2-H"} and f["verdict"] == "yes"


def test_correlations_over_all_runs_and_per_model(grid_res):
    allrow = next(r for r in grid_res["correlation"] if r["group"] == "all")
    assert allrow["n"] == 63 and allrow["spearman"] < -0.9
    assert {r["group"] for r in grid_res["correlation"]} == {"all", *MODELS}


# --- speed ------------------------------------------------------------------------------------------

def test_the_63_run_grid_is_analysed_in_seconds(tmp_path):
    paper_grid(noise=0.0003).to_csv(tmp_path / "r.csv", index=False)
    analyze(tmp_path / "r.csv", write=False, n_boot=50, fit_boot=10)  # warm-up (imports, caches)
    t0 = time.perf_counter()
    res = analyze(tmp_path / "r.csv", write=False)  # defaults: 2,000 + 200 resamples
    took = time.perf_counter() - t0
    # Regression: 2,886 least-squares calls took minutes; the goal is < 2 s, the bound leaves CI slack.
    assert took < 15, took
    assert all(f["identified"] is not None for f in res["fits"]["per_model"] if f["message"] is None)
