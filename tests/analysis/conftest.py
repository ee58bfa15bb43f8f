"""Makes the synthetic-results helpers (synth_results.py, beside this file) importable in any import mode."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
