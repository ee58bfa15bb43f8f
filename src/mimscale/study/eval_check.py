"""Every evaluation of every run of a study resolved before any compute: its config, its data sources, their
splits and labels (``evaluate.data.resolve_data``), so ``study plan`` names the data each evaluation uses and
``study run`` refuses a study whose evaluations would fail, before hours of pre-training rather than after.

Sources are listed, never decoded, and each distinct (eval entry, image size) is resolved once: seconds for
any grid.

Settings that run but would mislead are warned about, not refused (``check_study``): an evaluation whose test
images are among its training images, or among the images its run pre-trains on (a folder ROOT read whole
because it holds more than train/, val/ and test/), and fractions of one source that select the same images
or none (per-class rounding on small pools). Which images a source holds is judged from its description
(``evaluate.overlap``); the pre-training source is built once per check, as pre-training builds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mimscale.errors import UserError
from mimscale.study.spec import Study


@dataclass
class EvalCheck:
    """What ``study plan`` / ``study run`` learn before any compute."""

    data: dict[tuple[str, str], str]  # (run id, eval name) -> the data that evaluation uses, in words
    problems: list[str]  # evaluations that would fail: the study is refused
    warnings: list[str]  # results that would run but mislead: said, not refused


def resolve_evals(study: Study) -> tuple[dict[tuple[str, str], str], list[str]]:
    """(run id, eval name) -> the data that evaluation uses, in words; and one line per problem (an eval
    failing the same way on several runs is one line naming them, on every run one line naming none)."""
    check = check_study(study)
    return check.data, check.problems


def check_study(study: Study, sources=None) -> EvalCheck:
    """Every evaluation resolved (``resolve_evals``), and the warnings: an evaluation testing on its own training
    images, an evaluation testing on images its run pre-trained on. ``sources``: the ``preflight.Sources`` the
    other checks use, so each pre-training source is built (a folder listed) once."""
    from mimscale.evaluate.config import from_spec
    from mimscale.evaluate.data import resolve_data
    from mimscale.evaluate.overlap import same_images_warning
    from mimscale.study.preflight import Sources

    data: dict[tuple[str, str], str] = {}
    problems: dict[tuple[str, str], list[str]] = {}  # (eval name, message) -> run ids
    warned: dict[tuple[str, str], list[str]] = {}  # the same for warnings
    done: dict[tuple[str, int], tuple[dict | None, str | None]] = {}
    written = {e["name"]: e for e in study.evals}
    sources = Sources() if sources is None else sources
    for run in study.runs:
        size = int(run.cfg.data.img_size)
        for spec in run.evals:  # a run outside an eval's `runs` subset does not have it
            key = (json.dumps(spec, sort_keys=True, default=str), size)
            if key not in done:
                # An entry without train_source evaluates on the run's own pre-training images: say so.
                implicit = ("no train_source given, so the run's own images: "
                            if spec.get("train_source") and not written[spec["name"]].get("train_source") else "")
                try:
                    cfg = from_spec(spec)
                    done[key] = (resolve_data(cfg, int(cfg.img_size) or size, sources.get), None)
                except (UserError, OSError) as e:
                    done[key] = (None, implicit + " ".join(str(e).split()))
            resolved, problem = done[key]
            if problem is not None:
                problems.setdefault((spec["name"], problem), []).append(run.id)
                continue
            data[(run.id, spec["name"])] = resolved["name"]
            if (same := same_images_warning(resolved["train"], resolved["test"])) is not None:
                warned.setdefault((spec["name"], same), []).append(run.id)
            if (seen := _pretraining_overlap(run.cfg, resolved["test"], sources)) is not None:
                warned.setdefault((spec["name"], seen), []).append(run.id)
    warnings = _per_eval(study, warned)
    return EvalCheck(data, _per_eval(study, problems), warnings)


def _per_eval(study: Study, found: dict[tuple[str, str], list[str]]) -> list[str]:
    lines = []
    for (eval_name, message), ids in found.items():
        n_runs = sum(any(e["name"] == eval_name for e in r.evals) for r in study.runs)
        who = "" if len(ids) == n_runs else f" (run{'s' if len(ids) > 1 else ''} {', '.join(ids)})"
        lines.append(f"eval '{eval_name}'{who}: {message}")
    return lines


def _pretraining_overlap(cfg, test: dict, sources) -> str | None:
    """One line when an evaluation's test images are among the images its run pre-trains on (``data.source:
    folder:ROOT`` reads ROOT/train when ROOT holds only train/, val/ and test/, else all of ROOT)."""
    from mimscale.evaluate.overlap import images_folder, shared_images

    source = str(cfg.data.source)
    try:
        pool = sources.get(source).describe()
    except UserError:
        pool = None  # a source that does not build: preflight reports it
    if pool is None or not shared_images(pool, test):
        return None
    folder = images_folder(pool)
    hint = (f"; point data.source at a folder without them (e.g. folder:{folder}/train)"
            if folder is not None and Path(folder, "train").is_dir() else "; pre-train on other images")
    return (f"its test images are in the pre-training data (data.source {source}): pre-training saw them "
            f"(without labels), which is not the ImageNet-train-only protocol" + hint)


def eval_data_text(study: Study, data: dict[tuple[str, str], str]) -> dict[str, str]:
    """Eval name -> its data in words for the whole study: one name, or how many when runs differ."""
    out = {}
    for spec in study.evals:
        names = sorted({data[(r.id, spec["name"])] for r in study.runs if (r.id, spec["name"]) in data})
        if names:
            out[spec["name"]] = names[0] if len(names) == 1 else f"{len(names)} data sets (each run's own images)"
    return out
