"""The report's files: self-contained HTML, PNG figures, CSV tables; bad input; CSV input."""

import base64
import html
import json
import re
import shutil

import pandas as pd
from synth_results import make_study_dir, planted_overfit_frame

from mimscale.cli import main
from mimscale.report import build_report, report_main

FIGURES = {"loss_curves", "loss_vs_data", "metric_vs_data", "loss_vs_metric", "grid_heatmap"}
PNG = b"\x89PNG\r\n\x1a\n"
FAST = {"n_boot": 200, "fit_boot": 20}


def test_study_report_files(study_report):
    study, path = study_report
    assert path == study / "report" / "report.html"
    out = path.parent
    assert {p.stem for p in (out / "figures").glob("*.png")} == FIGURES
    for name in ("results", "correlation", "overfitting", "fits_per_model", "fits_joint", "data_gain", "selection"):
        assert (out / "tables" / f"{name}.csv").is_file()
    doc = json.loads((out / "tables" / "analysis.json").read_text())
    assert sum(r["flag"] for r in doc["overfitting"]) == 1


def test_report_is_self_contained(study_report):
    _, path = study_report
    text = path.read_text()
    # No network: no external URLs in src/href, no stylesheets or scripts to fetch.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    assert "<script" not in text and "<link" not in text
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:
        assert base64.b64decode(s.split(",", 1)[1]).startswith(PNG)
    # 5 figures + a gallery of 24 runs' latest reconstructions (the unfinished run has none).
    assert len(srcs) == len(FIGURES) + 24


def test_report_content(study_report):
    _, path = study_report
    text = path.read_text()
    findings = text[text.index("Findings"):text.index("</section>")]
    assert "1 of 24 settings: tiny-l at 100 images, 2,000 it" in findings
    assert "Spearman" in findings and "train/val gap" in findings
    for section in ("Validation-loss curves", "Held-out loss vs data size", "Downstream metrics vs data size",
                    "Validation loss vs downstream metrics", "The grid and overfitting", "Overfitting table",
                    "Gain from more data", "Scaling-law fits", "Choosing runs by validation loss",
                    "Reconstructions"):
        assert f">{section}<" in text, section
    assert text.count('<tr class="flag">') == 1  # the planted setting, highlighted in the table


def test_csv_report_without_curves_or_gallery(tmp_path):
    planted_overfit_frame().to_csv(tmp_path / "r.csv", index=False)
    path = build_report(tmp_path / "r.csv", **FAST)
    assert path == tmp_path / "r_report" / "report.html"
    text = path.read_text()
    assert ">Reconstructions<" not in text and ">Validation-loss curves<" not in text
    assert len(re.findall(r"<img ", text)) == len(FIGURES) - 1
    assert "no validation curves" in text  # the input note is shown


def test_report_main_exit_codes(tmp_path, capsys):
    pd.DataFrame({"model": ["a"], "val_loss": [0.5]}).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["report", str(tmp_path / "bad.csv")]) == 2
    assert "missing required column" in capsys.readouterr().err
    assert not (tmp_path / "bad_report").exists()
    df = planted_overfit_frame().iloc[:2]  # one setting at two lengths: too few for most analyses
    df.to_csv(tmp_path / "small.csv", index=False)
    argv = [str(tmp_path / "small.csv"), "--out", str(tmp_path / "o"), "--n-boot", "50", "--fit-boot", "5"]
    assert report_main(argv) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "o" / "report.html")
    text = (tmp_path / "o" / "report.html").read_text()
    assert "a correlation needs at least 3" in text and "needs at least 3 sizes" in text


def test_study_without_evals_or_pictures(tmp_path):
    study = make_study_dir(tmp_path / "s")
    for run in (study / "runs").iterdir():
        shutil.rmtree(run / "eval", ignore_errors=True)
        shutil.rmtree(run / "recon", ignore_errors=True)
    path = build_report(study, tmp_path / "o", **FAST)
    text = path.read_text()
    assert {p.stem for p in (tmp_path / "o" / "figures").glob("*.png")} == FIGURES - {
        "metric_vs_data", "loss_vs_metric"}
    assert "no eval_* columns" in text and "no reconstruction pictures" in text


def test_study_with_no_finished_run_exits_2(tmp_path, capsys):
    study = make_study_dir(tmp_path / "s")
    for summary in (study / "runs").glob("*/summary.json"):
        summary.unlink()
    assert main(["report", str(study), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no usable runs" in err and len(err.strip().splitlines()) == 1


def test_two_dataset_report_states_its_bases(tmp_path):
    from paper_grid import paper_grid

    paper_grid().to_csv(tmp_path / "g.csv", index=False)
    path = build_report(tmp_path / "g.csv", tmp_path / "o", same_distribution=True, **FAST)
    text = html.unescape(path.read_text())
    assert "Primary dataset (the held-out set's): in1k (the dataset with the most runs); every dataset treated as " \
           "the same distribution" in text
    assert "0.2% of the median held-out loss" in text and "Every rise of the held-out loss" in text
    doc = json.loads((tmp_path / "o" / "tables" / "analysis.json").read_text())
    g = [f for f in doc["fits"]["per_model"] if f["model"] == "swinv2-g" and f["message"] is None]
    # With in22k on in1k's axis, swinv2-g's loss rises at 14.2M: beta runs to its bound and is shown as such.
    assert g and all(f["beta"] is None and f["estimate"]["beta"] == 5.0 for f in g)
    fits = text[text.index(">Scaling-law fits<"):]
    assert "not identified" in fits and "beta at its bound 5" in fits
    assert {p.stem for p in (tmp_path / "o" / "figures").glob("*.png")} == FIGURES - {"loss_curves"}
    assert "weakest (least negative) for" in text
