"""``study status``: where every run of a study stands, from its files alone (safe while runs write).

Per run: status, step/total, latest held-out loss, images/s and ETA. Progress comes from the tail of
``metrics.jsonl`` (the freshest record) and checkpoint names; a finished run's from ``summary.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mimscale import rundir as R
from mimscale.rundir import RunDir, RunState
from mimscale.study import store
from mimscale.study.cost import clock
from mimscale.study.spec import Study, axis_text, total_steps_of

_TAIL_START = 64 * 1024  # bytes of metrics.jsonl read first; doubled until a val record shows up
_TAIL_MAX = 64 * 1024 * 1024


def _tail_records(path: Path, want_val: bool = True) -> list[dict]:
    """Parsed JSON lines from the end of ``path``; reads more only if no val loss is in the tail yet."""
    try:
        size = path.stat().st_size
    except OSError:
        return []
    n = _TAIL_START
    while True:
        with open(path, "rb") as f:
            f.seek(max(0, size - n))
            chunk = f.read(n).decode(errors="replace")
        lines = chunk.splitlines()
        if size > n:
            lines = lines[1:]  # the first line is probably cut
        records = list(R.parse_jsonl(lines))  # a line being written is skipped
        has_val = any(r.get("split") == R.VAL and r.get("name") == R.LOSS for r in records)
        if has_val or not want_val or n >= size or n >= _TAIL_MAX:
            return records
        n *= 4


def progress(run_dir: RunDir, want_val: bool = True) -> dict:
    """step, val_loss, images_per_s and the time of the newest metric record of a run (None if unknown).
    ``want_val=False``: only the tail's first 64 KiB, even without a held-out loss in it (a once-a-second
    look at a long run's step)."""
    out = {"step": None, "val_loss": None, "images_per_s": None, "time": None}
    ckpts = run_dir.list_checkpoints()
    if ckpts:
        out["step"] = ckpts[-1][0]
    for rec in _tail_records(run_dir.metrics, want_val):
        step = rec.get("step")
        if isinstance(step, int) and (out["step"] is None or step > out["step"]):
            out["step"] = step
        if rec.get("split") == R.VAL and rec.get("name") == R.LOSS:
            out["val_loss"] = rec.get("value")
        if rec.get("split") == R.TRAIN and rec.get("name") == R.IMAGES_PER_S:
            out["images_per_s"] = rec.get("value")
        out["time"] = rec.get("time", out["time"])
    return out


def status_rows(study: Study, study_dir: Path) -> list[dict]:
    """One dict per run: run, <axis keys>, status, step, total, val_loss, images_per_s, eta_s, error."""
    study_dir = Path(study_dir)
    rows = []
    for run in study.runs:
        d = store.run_dir(study_dir, run.id, run.cfg)
        state = store.run_state(study_dir, run.id, run.evals)
        summary = d.read_summary()
        p = progress(d) if d.path.is_dir() else {"step": None, "val_loss": None, "images_per_s": None}
        total = total_steps_of(run.cfg)
        if summary is not None:
            total = summary.get("iters", total)
            p["step"] = total
            p["val_loss"] = summary.get("final_val_loss", p["val_loss"])
            p["images_per_s"] = summary.get("images_per_s", p["images_per_s"])
        eta = None
        ips = p["images_per_s"]
        if state == RunState.RUNNING and total and p["step"] is not None and ips and ips > 0:
            eta = (total - p["step"]) * int(run.cfg.train.batch_size) / ips
        rows.append({"run": run.id, "name": d.name, **run.axes, "status": state, "step": p["step"], "total": total,
                     "val_loss": p["val_loss"], "images_per_s": ips, "eta_s": eta,
                     "error": store.failure_line(study_dir, run.id) if state == RunState.FAILED else None})
    from mimscale.study.slurm_queue import with_queue

    return with_queue(study, study_dir, rows)  # Slurm: queued / running from squeue


def counts(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.0f}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned text columns (no dependency: this also runs on a login node over ssh)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


# ``study status`` lists what needs attention first: what runs, what failed, what waits, then what is done.
SHOW_ORDER = (RunState.RUNNING, RunState.QUEUED, RunState.FAILED, RunState.INTERRUPTED, RunState.PARTIAL,
              RunState.PENDING, RunState.DONE)


def shown_order(rows: list[dict]) -> list[dict]:
    """Rows by ``SHOW_ORDER`` of their status (another status after them), grid order within a status."""
    rank = {str(s): i for i, s in enumerate(SHOW_ORDER)}
    return sorted(rows, key=lambda r: rank.get(str(r["status"]), len(rank)))


def render_status(study: Study, study_dir: Path, rows: list[dict]) -> str:
    axes = study.axis_keys()
    header = ["run", *axes, "status", "step/total", "val_loss", "img/s", "eta"]
    table = []
    for r in shown_order(rows):
        step = f"{_fmt(r['step'])}/{_fmt(r['total'])}" if r["step"] is not None else f"-/{_fmt(r['total'])}"
        ips = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.0f}"
        table.append([r.get("name") or r["run"], *(axis_text(r[k]) for k in axes), r["status"], step, _fmt(r["val_loss"]), ips,
                      clock(r["eta_s"])])
    c = counts(rows)
    order = [RunState.DONE, RunState.RUNNING, RunState.QUEUED, RunState.PARTIAL, RunState.PENDING, RunState.FAILED]
    parts = [f"{c[k]} {k}" for k in order if k in c] + [f"{v} {k}" for k, v in c.items() if k not in order]
    lines = [f"study {study.name} in {study_dir}: {len(rows)} runs, " + ", ".join(parts), "",
             format_table(header, table)]
    failed = [r for r in rows if r["status"] == RunState.FAILED]
    if failed:
        lines.append("")
        for r in failed:
            lines.append(f"failed {r.get('name') or r['run']}: {r['error'] or '?'} "
                         f"(see {store.run_dir(study_dir, r['run']).error})")
    return "\n".join(lines)


def status_json(study: Study, study_dir: Path, rows: list[dict]) -> dict:
    return {"study": study.name, "study_dir": str(study_dir), "time": time.time(), "counts": counts(rows),
            "axes": study.axis_keys(), "runs": rows}


def watch(study: Study, study_dir: Path, every_s: float, out=None, sleep=time.sleep) -> int:
    """``study status --watch``: the status redrawn every ``every_s`` seconds until no run is running or
    queued (then the last view stays on screen), or Ctrl-C; returns the exit code (0)."""
    out = out if out is not None else sys.stdout
    clear = "\x1b[H\x1b[2J" if out.isatty() else ""  # a log file gets the views one after another
    try:
        while True:
            rows = status_rows(study, study_dir)
            stamp = time.strftime("%H:%M:%S")
            out.write(f"{clear}{render_status(study, study_dir, rows)}\n\n"
                      f"{stamp}, every {every_s:g} s; Ctrl-C to stop watching (the runs go on)\n")
            out.flush()
            if not any(r["status"] in (RunState.RUNNING, RunState.QUEUED) for r in rows):
                out.write("nothing is running: stopped watching\n")
                return 0
            sleep(every_s)
    except KeyboardInterrupt:
        out.write("\n")
        return 0
