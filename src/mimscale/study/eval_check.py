"""Every evaluation of every run of a study resolved before any compute: its config, its data sources, their
splits and labels (``evaluate.data.resolve_data``), so ``study plan`` names the data each evaluation uses and
``study run`` refuses a study whose evaluations would fail, before hours of pre-training rather than after.

Sources are listed, never decoded, and each distinct (eval entry, image size) is resolved once: seconds for
any grid.
"""

from __future__ import annotations

import json

from mimscale.errors import UserError
from mimscale.study.spec import Study


def resolve_evals(study: Study) -> tuple[dict[tuple[str, str], str], list[str]]:
    """(run id, eval name) -> the data that evaluation uses, in words; and one line per problem (an eval
    failing the same way on several runs is one line naming them, on every run one line naming none)."""
    from mimscale.evaluate.config import from_spec
    from mimscale.evaluate.data import resolve_data

    data: dict[tuple[str, str], str] = {}
    problems: dict[tuple[str, str], list[str]] = {}  # (eval name, message) -> run ids
    done: dict[tuple[str, int], tuple[str | None, str | None]] = {}
    for run in study.runs:
        size = int(run.cfg.data.img_size)
        for spec, written in zip(run.evals, study.evals):
            key = (json.dumps(spec, sort_keys=True, default=str), size)
            if key not in done:
                # An entry without train_source evaluates on the run's own pre-training images: say so.
                implicit = "no train_source given, so the run's own images: " if spec is not written else ""
                try:
                    cfg = from_spec(spec)
                    done[key] = (resolve_data(cfg, int(cfg.img_size) or size)["name"], None)
                except (UserError, OSError) as e:
                    done[key] = (None, implicit + " ".join(str(e).split()))
            name, problem = done[key]
            if problem is None:
                data[(run.id, spec["name"])] = name
            else:
                problems.setdefault((spec["name"], problem), []).append(run.id)
    lines = []
    for (eval_name, problem), ids in problems.items():
        who = "" if len(ids) == len(study.runs) else f" (run{'s' if len(ids) > 1 else ''} {', '.join(ids)})"
        lines.append(f"eval '{eval_name}'{who}: {problem}")
    return data, lines


def eval_data_text(study: Study, data: dict[tuple[str, str], str]) -> dict[str, str]:
    """Eval name -> its data in words for the whole study: one name, or how many when runs differ."""
    out = {}
    for spec in study.evals:
        names = sorted({data[(r.id, spec["name"])] for r in study.runs if (r.id, spec["name"]) in data})
        if names:
            out[spec["name"]] = names[0] if len(names) == 1 else f"{len(names)} data sets (each run's own images)"
    return out
