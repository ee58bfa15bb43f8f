"""Analysis of a data-scaling study: overfitting, data-scaling fits, val-loss vs downstream correlation.

Reads run directories and result tables only (never model or training code). ``pipeline.py`` runs every
section (``analyze``); ``cli.py`` is ``mimscale analyze``. Names are imported on first use, so that the
command's ``--help`` does not pay for pandas and scipy.
"""

from __future__ import annotations

from mimscale.lazy import lazy_exports

_NAMES = {
    "analyze": "pipeline", "analyze_frames": "pipeline", "default_out": "pipeline", "flatten_rows": "pipeline",
    "jsonable": "pipeline", "write_tables": "pipeline", "load_results": "results", "results_table": "results",
    "ResultsError": "results", "analyze_main": "cli",
}
__all__ = list(_NAMES)

__getattr__ = lazy_exports(__name__, _NAMES)
