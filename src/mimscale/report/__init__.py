"""The study report: ``build_report(input_path, out_dir)`` (``build.py``) writes a self-contained
report.html with its figures and tables; ``report_main(argv)`` (``cli.py``) is ``mimscale report``.
Names are imported on first use, so that the command's ``--help`` does not pay for pandas and matplotlib.
"""

from __future__ import annotations

from mimscale.lazy import lazy_exports

_NAMES = {"build_report": "build", "report_main": "cli"}
__all__ = list(_NAMES)

__getattr__ = lazy_exports(__name__, _NAMES)
