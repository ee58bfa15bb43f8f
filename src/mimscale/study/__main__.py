"""``python -m mimscale.study ...`` = ``mimscale study ...`` (used by tests that kill the runner)."""

import sys

from mimscale.study.cli import study_main

sys.exit(study_main(sys.argv[1:]))
