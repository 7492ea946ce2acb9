"""Instruction counts (valgrind callgrind) for one presentation verification against two raw
Ed25519 verifications: the same ratio as ``verify_vs_floor`` but immune to machine noise.

Run as a child of ``benchmarks.run``; this module is also the child's program:
``python -m benchmarks.instructions MODE N`` with MODE none|raw|full.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

N = 200


def _workload(mode: str, n: int) -> None:
    from benchmarks.run import library_setup

    verifier, text, now, floor = library_setup()
    for _ in range(50):
        verifier.verify(text, service="library", now=now)
    if mode == "raw":
        for _ in range(n // 2):
            floor()  # two checks a call: the presentation's two signatures
    elif mode == "full":
        for _ in range(n):
            verifier.verify(text, service="library", now=now)


def _count(mode: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             "-m", "benchmarks.instructions", mode, str(N)],
            capture_output=True, text=True, timeout=900,
            cwd=Path(__file__).resolve().parents[1])
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or not match:
            raise RuntimeError(proc.stderr[-2000:])
        return int(match.group(1))


def figures() -> dict[str, float]:
    """Empty when valgrind is not installed (the figure is context, not a target)."""
    if shutil.which("valgrind") is None:
        return {}
    base = _count("none")
    raw = (_count("raw") - base) / N
    full = (_count("full") - base) / N
    return {"raw_ed25519_verify_instructions": round(raw),
            "verify_instructions": round(full),
            "verify_vs_floor_instructions": round(2 * raw / full, 3)}


if __name__ == "__main__":
    _workload(sys.argv[1], int(sys.argv[2]))
