"""``make run`` stays true: the demo runs the whole flow through real processes and succeeds."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_end_to_end() -> None:
    proc = subprocess.run([sys.executable, "-m", "pasaporte.demo"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.count("[accepted]") >= 3 and "[wrong_audience]" in out and "[revoked]" in out
    assert "Demo complete" in out
    assert "ledger.calexico.example/log/witness" in out  # the checkpoint is cosigned
