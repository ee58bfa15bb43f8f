"""The report's files: self-contained HTML, PNG figures, CSV tables; bad input; CSV input."""

import base64
import html
import json
import re
import shutil

import numpy as np
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
    # The verdicts lead; the findings (folded) follow them.
    assert text.index("id='verdicts'") < text.index("id='findings'")
    start = text.index("id='findings'")
    findings = text[start:text.index("</section>", start)]
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


def test_report_reads_at_a_glance(study_report):
    """Verdicts first, one line each with the numbers folded; a viewport meta; contents with anchors that
    exist; the long lists folded; figures that enlarge on a click; the gallery in a sideways-scrolling box."""
    _, path = study_report
    text = path.read_text()
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in text
    verdicts = text[text.index("id='verdicts'"):text.index("</section>")]
    assert verdicts.count("<details class='verdict'><summary><span class='badge ") == 3
    assert "overfitting on small data</summary><p>" in verdicts
    assert text.index("id='verdicts'") < text.index("<nav class='toc'>") < text.index("id='findings'")
    links = re.findall(r"href='#([^']+)'", text)
    ids = set(re.findall(r"id='([^']+)'", text))
    assert len(links) >= 10 and set(links) <= ids
    for section in ("verdicts", "findings", "validation-loss-curves", "the-grid-and-overfitting", "reconstructions"):
        assert f"href='#{section}'" in text, section
    assert re.search(r"<details><summary>All \d+ findings</summary>", text)
    assert re.search(r"<details><summary>Overfitting table: 24 rows, 1 flagged</summary>", text)
    assert text.count("<a class='zoom' href='#fig-") == len(FIGURES)
    assert '<div class="scroll"><table class="gallery">' in text


def _drawn(monkeypatch, draw):
    """The matplotlib Figure a figure function would save (nothing written)."""
    from mimscale.report import figures as F

    seen = []
    monkeypatch.setattr(F, "_save", lambda fig, path, out: seen.append(fig) or path)
    draw(F)
    return seen[0]


def test_figures_speak_words_percent_and_numeric_legends(study_report, monkeypatch, tmp_path):
    from mimscale.analysis import analyze_frames

    study, _ = study_report
    res, runs, curves = analyze_frames(study, tmp_path / "t", **FAST)
    # Runs in an order where the first panel meets the sizes out of order: the legend is still sorted.
    runs = runs.sort_values("data_size", key=lambda s: s.map({1000: 0, 200: 1, 100: 2, 500: 3}))
    fig = _drawn(monkeypatch, lambda F: F.loss_curves(curves, runs, tmp_path / "c.png"))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "100 images", "200 images", "500 images", "1k images"]
    fig = _drawn(monkeypatch, lambda F: F.metric_vs_data(runs, ["eval_linear_top1"], tmp_path / "m.png",
                                                         aliases={"eval_linear_top1": ["eval_linear_top5"]}))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "linear-probe top-1 = top-5 (%)"
    assert ax.get_xlabel() == "pre-training images (log)"
    ys = np.concatenate([line.get_ydata() for line in ax.get_lines()])
    # Accuracies of about 0.2-0.6 as fractions are drawn as 20-60 %.
    fractions = runs["eval_linear_top1"]
    assert 0 < fractions.min() and fractions.max() < 1
    assert 100 * fractions.min() - 1e-9 <= ys.min() and ys.max() <= 100 * fractions.max() + 1e-9 and ys.min() > 1


def test_identical_metrics_are_shown_once(tmp_path):
    df = planted_overfit_frame()
    df["eval_finetune_top1"] = df["eval_linear_top1"] + 0.01
    df["eval_finetune_final_top1"] = df["eval_finetune_top1"]  # the best epoch was the last: same numbers
    df.to_csv(tmp_path / "r.csv", index=False)
    path = build_report(tmp_path / "r.csv", tmp_path / "o", **FAST)
    text = path.read_text()
    both = "eval_finetune_top1 = eval_finetune_final_top1"
    corr = text[text.index("id='validation-loss-vs-downstream-metrics'"):]
    corr = corr[:corr.index("</section>")]
    assert corr.count(f"<td class=\"text\">{both}</td>") == 4  # all runs and each of 3 models, once
    assert "<td class=\"text\">eval_finetune_final_top1</td>" not in corr
    findings = text[text.index("id='findings'"):]
    findings = findings[:findings.index("</section>")]
    # the analysis writes each metric's sentence once, naming its twin
    assert findings.count("Validation loss vs eval_finetune") == 1
    assert "Validation loss vs eval_finetune_top1 (= eval_finetune_final_top1, the same on every run) over" in findings
    # The analysis' own tables keep every metric.
    assert "eval_finetune_final_top1" in (tmp_path / "o" / "tables" / "correlation.csv").read_text()


def test_figure_formats_and_dpi(tmp_path, capsys):
    planted_overfit_frame().to_csv(tmp_path / "r.csv", index=False)
    argv = [str(tmp_path / "r.csv"), "--out", str(tmp_path / "o"), "--n-boot", "50", "--fit-boot", "5",
            "--format", "svg,pdf", "--dpi", "150"]
    assert report_main(argv) == 0
    figs = tmp_path / "o" / "figures"
    names = FIGURES - {"loss_curves"}
    for ext, magic in (("png", PNG), ("svg", b"<?xml"), ("pdf", b"%PDF")):
        assert {p.stem for p in figs.glob(f"*.{ext}")} == names, ext
        assert all(p.read_bytes().startswith(magic) for p in figs.glob(f"*.{ext}")), ext
    from PIL import Image

    assert round(Image.open(figs / "loss_vs_data.png").info["dpi"][0]) == 150
    text = (tmp_path / "o" / "report.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', text)) == len(names)  # the page embeds PNG only
    assert "Figures are also in figures/ as PNG, SVG, PDF" in text
    capsys.readouterr()
    for bad in (["--format", "png,jpg"], ["--dpi", "0"]):
        assert main(["report", str(tmp_path / "r.csv"), "--out", str(tmp_path / "bad"), *bad]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and ("jpg" in err or "dpi" in err), err
        assert not (tmp_path / "bad").exists()


def test_metric_words():
    from mimscale.analysis.results import identical_metrics
    from mimscale.report.labels import metric_label

    assert metric_label("eval_finetune_top1") == "fine-tuned top-1 (%)"
    assert metric_label("eval_segment_miou") == "segmentation mIoU (%)"
    assert metric_label("eval_recon_loss") == "reconstruction loss"
    assert metric_label("eval_mystery_score") == "mystery score"
    df = pd.DataFrame({"eval_a_top1": [0.1, None, 0.3], "eval_a_final_top1": [0.1, None, 0.3],
                       "eval_b_top1": [0.1, 0.2, 0.3], "eval_empty": [None, None, None],
                       "eval_empty2": [None, None, None]})
    same = identical_metrics(df, list(df.columns))
    assert same == {"eval_a_top1": ["eval_a_final_top1"]}  # the analysis' grouping, which the report uses
    assert metric_label("eval_a_top1", ["eval_a_final_top1"]) == "a top-1 = final top-1 (%)"
