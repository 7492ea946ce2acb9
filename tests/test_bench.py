"""``make bench`` stays runnable: its smoke mode (every figure, each loop short) succeeds and
reports every key the issues ask for, without overwriting the last real report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS = ("raw_ed25519_verify_per_s", "verify_per_s", "verify_vs_floor", "qr_chars_library",
        "qr_chars_clinic", "qr_chars_paper", "decode_image_ms", "zxing_decode_ms",
        "decode_image_vs_zxing", "ledger_append_per_s", "sqlite_insert_per_s",
        "ledger_append_vs_sqlite", "ledger_proof_growth", "ledger_audit_growth")


def test_the_benchmark_runs_and_reports_every_key() -> None:
    latest = REPO / "benchmarks" / "results" / "latest.json"
    before = latest.read_bytes() if latest.exists() else None
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    missing = [key for key in KEYS if key not in report["figures"]]
    assert missing == [], missing
    assert report["figures"]["qr_chars_library"] > 0
    assert (latest.read_bytes() if latest.exists() else None) == before
