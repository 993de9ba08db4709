"""edge.daemon.memory: the daemon's peak RSS is its own, not that of the process that started it."""

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge.daemon.memory import peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
PROBE = ("from edge.daemon.memory import peak_rss_mb; import numpy as np; before = peak_rss_mb(); "
         "block = np.ones(100 * 2**20 // 8); print(before, peak_rss_mb())")


def test_a_child_of_a_large_parent_reports_its_own_peak_and_sees_it_grow():
    parent_block = np.ones(400 * 2**20 // 8)                 # 400 MB touched here, before the child starts
    assert peak_rss_mb() > 400
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    before, after = map(float, out.stdout.split())
    assert before < 200, f"the child reported {before:.0f} MB: its parent's peak, not its own"
    assert 90 < after - before < 130                           # the 100 MB it touched itself
    del parent_block


def test_vmhwm_is_read_and_without_it_the_rusage_figure_is_returned(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t 1024 kB\n")
    assert peak_rss_mb(status) == 200.0
    rusage_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    status.write_text("Name:\tpython\nVmRSS:\t 1024 kB\n")                  # a kernel without the line
    for path in (status, tmp_path / "no-such-status"):
        assert rusage_mb <= peak_rss_mb(path) <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
