"""Words for the report's metrics: axis labels a person reads ("fine-tuned top-1 (%)") instead of column
names (`eval_finetune_top1`), accuracies in percent, and metrics that are the same numbers under two names.

A downstream metric column is `eval_<task>` or `eval_<task>_<key>` (analysis/results.py). Tasks and keys
this module does not know keep their own spelling, with underscores as spaces.
"""

from __future__ import annotations

import pandas as pd

TASKS = {"finetune": "fine-tuned", "linear": "linear-probe", "knn": "kNN", "segment": "segmentation",
         "recon": "reconstruction"}
KEYS = {"top1": "top-1", "top5": "top-5", "final_top1": "final top-1", "final_top5": "final top-5",
        "miou": "mIoU", "final_miou": "final mIoU", "baseline_miou": "baseline mIoU",
        "pixel_acc": "pixel accuracy", "final_pixel_acc": "final pixel accuracy",
        "baseline_pixel_acc": "baseline pixel accuracy", "loss": "loss"}
# Keys that are a share of correct answers: shown in percent.
ACCURACY_KEYS = ("top1", "top5", "miou", "pixel_acc", "acc", "accuracy")

COLUMN_WORDS = {"val_loss": "held-out loss", "data_size": "pre-training images", "iters": "iterations",
                "train_probe_loss": "train-probe loss", "gap": "train/val gap"}


def _split(metric: str) -> tuple[str, str]:
    """('finetune', 'final_top1') for eval_finetune_final_top1; the task is the first word after eval_."""
    name = metric.removeprefix("eval_")
    task, _, key = name.partition("_")
    return task, key


def is_accuracy(metric: str) -> bool:
    _, key = _split(metric)
    return bool(key) and key.endswith(ACCURACY_KEYS)


def metric_words(metric: str) -> str:
    """'fine-tuned top-1' for eval_finetune_top1, 'linear-probe top-5' for eval_linear_top5."""
    if metric in COLUMN_WORDS:
        return COLUMN_WORDS[metric]
    if not metric.startswith("eval_"):
        return metric.replace("_", " ")
    task, key = _split(metric)
    words = [TASKS.get(task, task.replace("_", " "))]
    if key:
        words.append(KEYS.get(key, key.replace("_", " ")))
    return " ".join(words)


def in_percent(values: pd.Series, metric: str) -> bool:
    """An accuracy stored as a fraction (every value in [0, 1]) is shown times 100."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    return is_accuracy(metric) and not v.empty and bool(((v >= 0) & (v <= 1)).all())


def metric_label(metric: str, aliases: list[str] | tuple = ()) -> str:
    """Axis label: words, the other names of the same numbers (their words after what they share with
    this one's), and '(%)' for an accuracy: 'fine-tuned top-1 = final top-1 (%)'."""
    words = metric_words(metric)
    label = words
    for a in aliases:
        mine, theirs = words.split(), metric_words(a).split()
        shared = next((i for i, (x, y) in enumerate(zip(mine, theirs)) if x != y), min(len(mine), len(theirs)))
        label += " = " + " ".join(theirs[shared:] or theirs)
    return label + (" (%)" if is_accuracy(metric) else "")


def shown(values: pd.Series, metric: str) -> pd.Series:
    """The values as the figures draw them: a fractional accuracy in percent, everything else as is."""
    return values * 100 if in_percent(values, metric) else values


def aliases_of(groups: dict[str, list[str]]) -> dict[str, str]:
    """{dropped metric: the metric kept in its place}."""
    return {a: k for k, al in groups.items() for a in al}


def named_once(groups: dict[str, list[str]], metric: str) -> str:
    """'eval_finetune_top1 = eval_finetune_final_top1' for a kept metric with aliases, else the name."""
    return " = ".join([metric, *groups.get(metric, [])])
