"""docs/CONFIG.md, written from the key declarations (``mimscale.config_keys``) of both config schemas.

    python -m mimscale.config_docs > docs/CONFIG.md

tests/test_config_docs.py fails when the committed file differs from what this writes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from mimscale import config as C
from mimscale.config_keys import PLACEMENT, Key, field_type, sections
from mimscale.evaluate import config as E

HEADER = """# Configuration keys

Generated from the key declarations in `src/mimscale/config.py` and `src/mimscale/evaluate/config.py` by
`python -m mimscale.config_docs > docs/CONFIG.md`; do not edit by hand (a test fails when it is stale).

A config is layered: the defaults below < a YAML file (`-c FILE`) < `key=value` overrides. **Checked**: what
a value must be (a bad value is a one-line error before anything runs). A key **added in** a later schema
version is left out of the identity while it holds its default, so ids computed before it existed stay the
same. A key added to change a default says what it **was**: that older value is the one left out, so a result
computed before the key still means the old behaviour and the new default computes anew.

The shipped configs are installed with the package (`src/mimscale/configs/`: `pretrain/`, `finetune/`,
`studies/`). A config path is tried as given (a study's `base_config` and `evals[].config` relative to the study
file's folder, `-c` relative to the working directory), then among the packaged configs by its short name:
`mimscale pretrain -c pretrain/swinv2-cpu.yaml`, `mimscale study plan studies/paper.yaml`. The repository's
former top-level paths (`configs/pretrain/...`) name the same files; an error lists every place tried.
"""

PRETRAIN = """## Pre-training (`mimscale pretrain`, a study's `base` and `axes`)

Dotted keys (`train.iters=1000`). **In run id**: whether the key changes the run id; the others say where or
how fast a run goes (or stop a failing one) and not what it computes. Checks that need the number of processes
or the built model (the batch divides over processes, the image size over the model's stride) run when the run
starts. Schema version {version}.
"""

EVALUATE = """## Evaluation (`mimscale finetune`, a study's `evals` entries)

Flat keys (`knn_k=20`). **Read by**: the tasks whose result depends on the key (its identity); a finished
evaluation is reused across the others.
"""


def _value(v: Any) -> str:
    if isinstance(v, str):
        return f"`{v}`" if v else '`""`'
    return f"`{json.dumps(list(v) if isinstance(v, tuple) else v)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(name: str, schema: type, decl: Key, role: str) -> str:
    added = str(decl.since) if decl.since else ""
    if decl.neutral != decl.default:
        added += f" (was {_value(decl.neutral)})"
    return (f"| `{name}` | `{_cell(field_type(schema, name))}` | {_value(decl.default)} | {_cell(decl.check.what)} | "
            f"{role} | {added} | {_cell(decl.doc)} |")


def markdown() -> str:
    lines = [HEADER, PRETRAIN.format(version=C.SCHEMA_VERSION)]
    groups = dict(sections(C.Config))
    for group in [*groups, ""]:
        lines.append(f"### `{group}`: {groups[group]}\n" if group else "### Top level\n")
        lines.append("| key | type | default | checked | in run id | added in | meaning |")
        lines.append("|---|---|---|---|---|---|---|")
        for name, decl in C.KEYS.items():
            if (name.split(".")[0] if "." in name else "") == group:
                lines.append(_row(name, C.Config, decl, "no" if decl.role == PLACEMENT else "yes"))
        lines.append("")
    lines += [EVALUATE, "| key | type | default | checked | read by | added in | meaning |",
              "|---|---|---|---|---|---|---|"]
    for name, decl in E.KEYS.items():
        lines.append(_row(name, E.EvalConfig, decl, ", ".join(decl.tasks) or "none"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
