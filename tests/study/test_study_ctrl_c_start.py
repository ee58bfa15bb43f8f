"""Ctrl-C in a terminal reaches the whole foreground process group: the study parent and a worker that is still
importing (before it moves to its own group). The study stops with one line, exit 130, and no traceback."""

import os
import signal
import subprocess
import sys
import time

from study_helpers import write_study

TOY = "study_helpers:toy_pretrain"

# The parent runs this file as a script; a spawned worker imports it again as __mp_main__: there it sleeps, so
# the Ctrl-C surely finds the worker importing.
LAUNCHER = """
import sys, time
if __name__ == "__mp_main__":
    time.sleep(5)
if __name__ == "__main__":
    from mimscale.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_while_a_worker_is_still_importing(tmp_path, helper_env):
    study = write_study(tmp_path / "s.yaml", {"name": "toy", "base": {"train.iters": 3},
                                              "axes": {"data.fraction": [1.0]}})
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    proc = subprocess.Popen([sys.executable, str(launcher), "study", "run", str(study), "--out", str(tmp_path / "out"),
                             "--run-fn", TOY], env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    for line in proc.stderr:  # the parent says when it starts the worker
        lines.append(line)
        if line.startswith("start"):
            break
    time.sleep(1.0)  # the worker is inside its import now
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, rest = proc.communicate(timeout=120)
    err = "".join(lines) + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "run the same command again to continue" in err, err
