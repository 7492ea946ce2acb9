"""``make bench``: speed and size figures as JSON, each timing a ratio against a baseline
measured in the same run (these machines are shared and noisy), with absolute figures for context.

Writes ``benchmarks/results/latest.json``. ``--skip-ledger`` leaves out the (minutes-long)
ledger figures; ``--quick`` shortens every loop (for a smoke test, not for reporting).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing
from PIL import Image

import verifier.engine
from credential import cose, qr, sd, transport
from credential.passport import (
    IssuedCredential,
    credential_digest,
    decode_text,
    kb_aad,
    present,
)
from credential.statuslist import DEFAULT_SIZE, StatusList
from pasaporte.demo import MARIA
from schemas import schema
from tests.credential.photos import phone_photo  # run from the checkout (make bench)
from tests.factory import City
from verifier.engine import Verifier

RESULTS = Path(__file__).resolve().parent / "results"
# The same resident as `make run`: realistic names, every group filled. Her validity and the
# benchmark's clock are fixed together (the demo's follow the day it runs), so the figures
# never depend on the date they are measured on.
EXAMPLE = {**MARIA, "valid_from": "2026-11-22", "valid_until": "2029-11-21"}
NOW = 1_795_446_000  # 2026-11-23 15:00 UTC


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second over about ``seconds`` of wall time."""
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def _paired(a: Callable[[], object], b: Callable[[], object], rounds: int,
            seconds: float) -> tuple[float, float]:
    """Best rate of each over interleaved rounds, so that both see the same machine load."""
    best_a = best_b = 0.0
    for _ in range(rounds):
        best_a = max(best_a, _rate(a, seconds))
        best_b = max(best_b, _rate(b, seconds))
    return best_a, best_b


def _scene() -> tuple[City, nacl.signing.SigningKey, IssuedCredential, Verifier]:
    """One city, one resident with a wallet key, their credential and a warm counter.
    The status index is a realistic six-digit one: small indices encode shorter."""
    city = City(now=NOW, next_index=123_455)
    holder = nacl.signing.SigningKey.generate()
    return city, holder, city.issue(EXAMPLE, holder=holder), city.verifier()


def _present(cred: IssuedCredential, holder: nacl.signing.SigningKey, service: str) -> str:
    groups = schema().services[service].discloses
    return transport.pack(present(cred.cose, cred.disclosures, groups=groups, holder=holder,
                                  audience=service, now=NOW))


def floor_checks(city: City, holder: nacl.signing.SigningKey, text: str) -> Callable[[], None]:
    """The floor: pynacl's public API checking the two signatures a presentation carries (the
    office's over the credential, the holder's key binding), on the very messages they sign.
    Any other message or key would do for the figure's meaning, but these make it a paired
    measurement: Ed25519 verification time varies a little with the signature (libsodium's
    scalar multiplication is variable-time), and this run's presentation and floor share it."""
    d = decode_text(text)
    assert d.kb is not None
    c, kb = d.credential, d.kb.sign1
    aad = kb_aad(credential_digest(c), [sd.leaf_digest(x) for x in d.disclosures])
    office, wallet = city.office_key.verify_key, holder.verify_key
    office_msg = cose.sig_structure(c.protected, c.payload)
    holder_msg = cose.sig_structure(kb.protected, kb.payload, aad)
    office.verify(office_msg, c.signature)  # both hold, or the floor measures a failure path
    wallet.verify(holder_msg, kb.signature)

    def both() -> None:
        office.verify(office_msg, c.signature)
        wallet.verify(holder_msg, kb.signature)

    return both


def library_setup() -> tuple[Verifier, str, int, Callable[[], None]]:
    """A warm verifier, one library presentation and its floor (for the instruction-count
    child)."""
    city, holder, cred, verifier = _scene()
    text = _present(cred, holder, "library")
    return verifier, text, NOW, floor_checks(city, holder, text)


def credential_figures(quick: bool) -> dict[str, Any]:
    city, holder, cred, verifier = _scene()
    library = _present(cred, holder, "library")
    clinic = _present(cred, holder, "clinic")
    paper_text = transport.pack(city.issue(EXAMPLE).to_cbor())
    assert verifier.verify(library, service="library", now=NOW).accepted

    # Raw floor: pynacl checking this presentation's two signatures (two checks per call).
    rounds, seconds = (2, 0.2) if quick else (5, 1.0)
    pairs, full = _paired(floor_checks(city, holder, library),
                          lambda: verifier.verify(library, service="library", now=NOW),
                          rounds, seconds)
    raw = 2 * pairs

    # Image path: a phone-like photo of the library QR.
    photo = phone_photo(qr.render_png(library), seed=11)
    assert verifier.verify_image(photo, service="library", now=NOW).accepted

    def bare() -> None:
        image = Image.open(io.BytesIO(photo))
        image.load()
        assert qr.zxing_read(image.convert("L") if image.mode not in ("L", "RGB") else image)

    image_rounds = 2 if quick else 5
    zx_rate, img_rate = _paired(bare, lambda: verifier.verify_image(photo, service="library",
                                                                     now=NOW),
                                image_rounds, 0.3 if quick else 1.5)
    return {
        "raw_ed25519_verify_per_s": round(raw),
        "verify_per_s": round(full),
        "verify_vs_floor": round(full / (raw / 2), 3),
        "verify_us": round(1e6 / full, 1),
        "qr_chars_library": len(library),
        "qr_chars_clinic": len(clinic),
        "qr_chars_paper": len(paper_text),
        "qr_version_library": qr.qr_version(library),
        "qr_version_clinic": qr.qr_version(clinic),
        "qr_version_paper": qr.qr_version(paper_text),
        "qr_ecc_level": qr.ECC_LEVEL,
        "decode_image_ms": round(1000 / img_rate, 2),
        "zxing_decode_ms": round(1000 / zx_rate, 2),
        "decode_image_vs_zxing": round(zx_rate / img_rate, 3),
    }


def status_figures() -> dict[str, Any]:
    """A million passports, 1 % of them revoked (at random indices, as the issuer's keyed
    permutation spreads them): the revocation bits a counter holds, as published, in one list
    of a million entries (``issuer init --list-size 1000000``) and in the default lists of
    131,072 (eight of them, the last not full)."""
    count, revoked = 1_000_000, random.Random(7).sample(range(1_000_000), 10_000)
    one = StatusList.new("revocation", count)
    for i in revoked:
        one.set(i)
    lists = [StatusList.new("revocation") for _ in range(-(-count // DEFAULT_SIZE))]
    for i in revoked:
        lists[i // DEFAULT_SIZE].set(i % DEFAULT_SIZE)
    return {
        "status_list_bytes_1m": len(one.bits),
        "status_list_compressed_bytes_1m_1pct": len(one.compress()),
        "status_list_bytes_1m_default_lists": sum(len(lst.bits) for lst in lists),
        "status_list_compressed_bytes_1m_1pct_default_lists": sum(len(lst.compress())
                                                                   for lst in lists),
    }


TARGETS = {
    "verify_vs_floor": (">=", 0.7),
    "qr_chars_library": ("<=", 555),
    "qr_chars_paper": ("<=", 700),
    "decode_image_vs_zxing": ("<=", 1.3),
    "status_list_bytes_1m": ("<=", 125_000),
    "ledger_append_vs_sqlite": (">=", 0.25),
    "ledger_proof_growth": ("<=", 2),
    # the absolute figures the ledger's issue names beside its ratios (they swing with the
    # machine's load: reported, as the ratios are, for the run they were measured in)
    "ledger_inclusion_proof_ms_1m": ("<=", 1),
    "ledger_consistency_proof_ms_1m": ("<=", 1),
    "ledger_audit_growth": ("<=", 1.2),
    "ledger_audit_s_per_million_1m": ("<=", 10),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-ledger", action="store_true")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {}
    if not verifier.engine.__file__.endswith(".so"):
        print("note: the verification hot path is not compiled (no C compiler when make compile "
              "ran): verify_per_s is the interpreted figure, not a counter's", file=sys.stderr)
    print("credential figures…", file=sys.stderr)
    figures.update(credential_figures(args.quick))
    figures.update(status_figures())
    if not args.quick:
        print("instruction counts (valgrind)…", file=sys.stderr)
        from benchmarks import instructions

        figures.update(instructions.figures())
    if not args.skip_ledger:
        print("ledger figures (a few minutes)…", file=sys.stderr)
        from benchmarks import ledger_bench

        figures.update(ledger_bench.run(quick=args.quick))
    checks = {key: {"target": f"{op} {limit}", "met": (figures[key] >= limit if op == ">="
                                                        else figures[key] <= limit)}
              for key, (op, limit) in TARGETS.items() if key in figures}
    report = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"python": platform.python_version(), "cpu": platform.machine(),
                          # whether the hot path ran compiled (make compile), as counters run it
                          "compiled": verifier.engine.__file__.endswith(".so")},
              "figures": figures, "targets": checks}
    if not args.quick:  # a smoke run's figures are no report: the last real one stays
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
