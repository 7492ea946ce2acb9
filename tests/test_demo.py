"""``make run`` stays true: the demo runs the whole flow through real processes and succeeds."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import sys

import pytest

from pasaporte.demo import valid_for


def test_demo_runs_end_to_end() -> None:
    proc = subprocess.run([sys.executable, "-m", "pasaporte.demo"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.count("[accepted]") >= 3 and "[wrong_audience]" in out and "[revoked]" in out
    assert "Demo complete" in out
    assert "ledger.calexico.example/log/witness" in out  # the checkpoint is cosigned


def test_the_demo_residents_are_valid_the_day_it_runs_in_any_year() -> None:
    assert valid_for(3, datetime.date(2031, 5, 10)) == {"valid_from": "2031-05-09",
                                                         "valid_until": "2034-05-09"}
    assert valid_for(1, datetime.date(2028, 3, 1)) == {"valid_from": "2028-02-29",
                                                        "valid_until": "2029-02-28"}
    window = valid_for(1)
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    assert window["valid_from"] < today < window["valid_until"]


@pytest.mark.skipif(shutil.which("faketime") is None,
                    reason="needs Debian's faketime (.ci/run installs it)")
def test_make_run_still_works_years_from_now() -> None:
    """The whole demo, every process of it (the ledger server too), on a clock five years
    ahead (libfaketime): nothing in it may depend on the year it was written in."""
    ahead = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5 * 365)
    proc = subprocess.run(["faketime", ahead.strftime("%Y-%m-%d %H:%M:%S"), sys.executable,
                           "-m", "pasaporte.demo"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Demo complete" in proc.stdout and proc.stdout.count("[accepted]") >= 3
