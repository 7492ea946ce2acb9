"""``pasaporte verify --batch`` and ``--scan``: a counter's scanner log, read line by line and
bounded, and the counter at work reading its scanner live."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from credential import transport
from credential.times import rfc3339
from tests.conftest import Run
from tests.factory import NOW, City, example_claims, presentation
from verifier.cli import MAX_LINE, MAX_SKIP


def _counter(tmp_path: Path, city: City) -> list[str]:
    (tmp_path / "b.cbor").write_bytes(city.bundle())
    (tmp_path / "r.json").write_text(city.root.to_json())
    return ["verify", "--service", "transit", "--bundle", str(tmp_path / "b.cbor"),
            "--trust-root", str(tmp_path / "r.json"), "--at", rfc3339(NOW), "--json"]


def _at_work(tmp_path: Path, service: str, bundle: Path, root: Path,
             *extra: str) -> subprocess.Popen[bytes]:
    """A counter at work in its own process (``verify --scan --json``), its scanner on stdin."""
    return subprocess.Popen(
        [sys.executable, "-m", "pasaporte.cli", "verify", "--service", service, "--bundle",
         str(bundle), "--trust-root", str(root), *extra, "--scan", "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)


def test_a_noisy_log_rejects_its_bad_lines_and_reads_on(tmp_path: Path, run: Run) -> None:
    city = City()
    good = city.issue_text(None, example_claims()).encode()
    log = b"".join([
        b"\xef\xbb\xbf" + good + b"\r\n",  # saved by Notepad: a BOM, Windows line ends
        b"PU1:\xff\xfe line noise that is not UTF-8\n",
        good.lower() + b"\n",  # caps lock on: the same payload
        b"\n",  # blank lines are skipped
        good + b"X" * 5000 + b"\n",  # too long for a payload: never cut back to the good one
        b"A" * (3 * MAX_LINE) + b"\n",  # too long even to read: skipped in bounded pieces
        good,  # the last line may lack its newline
    ])
    (tmp_path / "scans.log").write_bytes(log)
    code, out, err = run(*_counter(tmp_path, city), "--batch", str(tmp_path / "scans.log"))
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["code"] for r in results] == ["accepted", "base45_invalid", "accepted",
                                            "too_large", "too_large", "accepted"], err
    assert [r["line"] for r in results] == [1, 2, 3, 5, 6, 7]
    assert code == 1  # not every line accepted
    assert all(set(r["message"]) == {"es", "en"} for r in results)


def test_an_image_that_is_no_file_is_a_usage_error(tmp_path: Path, run: Run) -> None:
    """A pipe (it would block until written to) or a device (/dev/zero never ends) given as
    the photo: refused at once, before anything is read."""
    city = City()
    os.mkfifo(tmp_path / "photo.png")
    for path in (str(tmp_path / "photo.png"), "/dev/zero"):
        code, out, err = run(*_counter(tmp_path, city), "--image", path)
        assert (code, out) == (2, "") and "[image_not_a_file]" in err and path in err


@pytest.mark.parametrize("counter", ["", "  ", "x" * 70, "desk\x1b[2K"])
def test_a_counter_id_no_wallet_signs_is_a_usage_error(tmp_path: Path, run: Run,
                                                       counter: str) -> None:
    """An empty id (a launcher's unset variable) checked no code's audience: a code made for
    any other counter was accepted. Held to the wallet's rule for the ids it signs."""
    city = City()
    code, out, err = run(*_counter(tmp_path, city), "--counter", counter, "--text",
                         city.issue_text(None, example_claims()))
    assert code == 2 and out == "" and err.startswith("[counter_invalid] "), err
    assert "\x1b" not in err  # shown escaped


def test_an_empty_batch_is_no_success(tmp_path: Path, run: Run) -> None:
    """No code in the file (a wrong file, a day without scans): nothing was accepted, so the
    exit is not 0, and the clerk is told why."""
    city = City()
    (tmp_path / "scans.log").write_text("\n  \n")
    code, out, err = run(*_counter(tmp_path, city), "--batch", str(tmp_path / "scans.log"))
    assert (code, out) == (1, "") and "[batch_empty]" in err and "nada" in err


def test_an_endless_line_stops_the_batch_with_a_usage_error(tmp_path: Path, run: Run) -> None:
    """``--batch /dev/zero`` by mistake: a line that never ends is not read on for ever."""
    city = City()
    good = city.issue_text(None, example_claims()).encode()
    (tmp_path / "log").write_bytes(good + b"\n" + bytes(2 * MAX_SKIP) + b"\n" + good)
    code, out, err = run(*_counter(tmp_path, city), "--batch", str(tmp_path / "log"))
    assert code == 2 and "batch_not_lines" in err and "line break" in err
    assert [json.loads(line)["code"] for line in out.splitlines()] == ["accepted"]
    code, out, err = run(*_counter(tmp_path, city), "--batch", "/dev/zero")
    assert code == 2 and "batch_not_lines" in err and out == ""


def test_a_photo_given_as_a_scanner_log_is_one_usage_error(tmp_path: Path, run: Run) -> None:
    """``--batch photo.jpg`` meant ``--image``: thousands of "not a passport" lines from its
    bytes; now one refusal naming --image."""
    from credential import qr

    city = City()
    text = city.issue_text(None, example_claims())
    (tmp_path / "code.png").write_bytes(qr.render_png(text))
    code, out, err = run(*_counter(tmp_path, city), "--batch", str(tmp_path / "code.png"))
    assert (code, out) == (2, "") and err.startswith("[scan_input_is_image] ")
    assert "--image" in err and "No se verificó nada" in err


def test_an_oversized_setup_file_is_not_read(tmp_path: Path, run: Run) -> None:
    """A counter pointed at a huge file by mistake: a usage error naming it, nothing allocated
    beyond the limit (the file here is sparse: 1 GB that takes no disk)."""
    city = City()
    args = _counter(tmp_path, city)
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as fh:
        fh.truncate(2**30)
    text = city.issue_text(None, example_claims())
    swapped = [str(huge) if a.endswith("b.cbor") else a for a in args]
    code, _, err = run(*swapped, "--text", text)
    assert code == 2 and "file_too_large" in err and "huge.bin" in err
    code, _, err = run(*args, "--bundle-proof", str(huge), "--log-key", "x", "--witness-key", "y",
                       "--text", text)
    assert code == 2 and "file_too_large" in err


def test_an_unwritable_output_is_a_bilingual_error(tmp_path: Path, passphrase: str,
                                                    run: Run) -> None:
    (tmp_path / "file").write_text("")
    code, _, err = run("wallet", "init", "--home", str(tmp_path / "file" / "wallet"))
    assert code == 1 and "file_error" in err and "Could not read or write" in err
    assert "No se pudo leer o escribir" in err and "no es un directorio" in err


def test_setup_mistakes_are_usage_errors_in_both_languages(tmp_path: Path, run: Run) -> None:
    args = _counter(tmp_path, City())
    code, _, err = run(*args, "--text", "PU1:X", "--batch", str(tmp_path / "r.json"))
    assert code == 2 and "Uso incorrecto: indique uno solo" in err
    assert "Incorrect use: give exactly one" in err
    (tmp_path / "deep.json").write_text("[" * 30_000 + "]" * 30_000)
    args[args.index("--trust-root") + 1] = str(tmp_path / "deep.json")
    code, _, err = run(*args, "--text", "PU1:X")
    assert code == 2 and "root_invalid" in err


def test_a_broken_bundle_or_root_among_several_is_named(tmp_path: Path, run: Run) -> None:
    """A counter set up with two cities' files: "the trust bundle is not valid" alone did not
    say which file to replace."""
    mexicali, calexico = City(), City("Calexico", "US", "USCXL")
    args = _counter(tmp_path, mexicali)
    (tmp_path / "calexico.cbor").write_bytes(calexico.bundle()[:300])  # cut short
    (tmp_path / "calexico.json").write_text(calexico.root.to_json())
    both = [*args, "--bundle", str(tmp_path / "calexico.cbor"),
            "--trust-root", str(tmp_path / "calexico.json"), "--text", "PU1:X"]
    code, _, err = run(*both)
    assert code == 2 and "[bundle_invalid]" in err, err
    es, _, en = err.partition(" / ")
    assert "calexico.cbor: " in es and "calexico.cbor: " in en and "b.cbor" not in err, err
    (tmp_path / "calexico.cbor").write_bytes(calexico.bundle())
    (tmp_path / "calexico.json").write_text('{"type": "x"}')
    code, _, err = run(*both)
    assert code == 2 and "[root_invalid]" in err and "calexico.json: " in err, err
    assert "r.json" not in err
    # signed whole, but a status list in it damaged: which file, too
    (tmp_path / "calexico.cbor").write_bytes(calexico.bundle_with_damaged_list())
    (tmp_path / "calexico.json").write_text(calexico.root.to_json())
    code, _, err = run(*both)
    assert code == 2 and "[statuslist_invalid]" in err and "calexico.cbor: " in err, err
    assert "b.cbor" not in err


def test_a_batch_whose_results_cannot_be_written_says_how_far_it_got(tmp_path: Path) -> None:
    """Its results file on a full disk: the generic "check with list or status" (commands a
    counter has none of) said nothing of how many results went in."""
    city = City()
    paper = city.issue_text(None, example_claims())
    (tmp_path / "log.txt").write_text(f"{paper}\n" * 50)
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "pasaporte.cli",
                               *_counter(tmp_path, city), "--batch", str(tmp_path / "log.txt")],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
                              check=False)
    assert done.returncode == 1 and "[batch_output_failed]" in done.stderr, done.stderr
    assert "0 results were written" in done.stderr and "line 1" in done.stderr
    assert "se escribieron 0 resultados" in done.stderr and "Traceback" not in done.stderr


def test_the_counter_at_work_scans_and_takes_a_new_bundle_without_restarting(
        tmp_path: Path) -> None:
    """``--scan``: a real process reading a scanner's lines from its standard input shows each
    result as it comes; a new bundle dropped in place (the resident was revoked meanwhile) counts
    from the next scan on; a broken one is refused and the last good one kept; the end of the
    input ends the session with a count."""
    city = City(now=int(time.time()))
    holder = nacl.signing.SigningKey.generate()
    cred = city.issue(holder=holder)
    bundle, root = tmp_path / "b.cbor", tmp_path / "r.json"
    bundle.write_bytes(city.bundle())
    root.write_text(city.root.to_json())
    with _at_work(tmp_path, "library", bundle, root) as counter:
        assert counter.stdin and counter.stdout and counter.stderr

        def scan(line: str) -> dict[str, Any]:
            assert counter.stdin and counter.stdout
            counter.stdin.write(line.encode() + b"\n")
            counter.stdin.flush()
            result: dict[str, Any] = json.loads(counter.stdout.readline())
            return result

        def replace(data: bytes) -> None:  # as a trust sync would: whole, in one rename
            (tmp_path / "new.cbor").write_bytes(data)
            os.replace(tmp_path / "new.cbor", bundle)

        def shown() -> str:
            return presentation(cred, holder, "library", ["residence", "library"],
                                now=int(time.time()))

        watchdog = threading.Timer(120, counter.kill)  # a hung counter fails, never hangs CI
        watchdog.start()
        try:
            assert scan(shown())["decision"] == "accepted"
            assert scan("not a passport")["code"] == "not_pasaporte"
            city.revocation.set(city.next_index, True)
            replace(city.bundle(version=2))
            assert scan(shown())["code"] == "revoked"
            replace(b"\xa0 not a bundle")
            assert scan(shown())["code"] == "revoked"  # the last good setup, still in force
            assert scan(shown())["code"] == "revoked"  # (said once, not at every scan)
            bundle.unlink()  # gone: the same
            assert scan(shown())["code"] == "revoked"
            counter.stdin.close()
            assert counter.wait(timeout=30) == 0
        finally:
            watchdog.cancel()
            counter.kill()
        assert counter.stdout.read() == b""
        err = counter.stderr.read().decode()
    assert "Listo para escanear Biblioteca / Ready to scan Library (Mexicali v1)" in err
    assert "Configuración actualizada / Setup updated: Mexicali v2" in err
    assert err.count("Still using the previous setup (Mexicali v2)") == 2
    assert "[bundle_invalid]" in err and "[setup_file_unreadable]" in err and "b.cbor" in err
    assert "half-written" not in err  # it only reads
    assert "Escaneos / Scans: 6 — aceptados / accepted: 1, rechazados / rejected: 5" in err


def test_the_counter_at_work_takes_a_new_policy_without_restarting(tmp_path: Path) -> None:
    """The policy file is setup like the bundles: edited in place, it counts from the next
    scan; a broken one is refused and the last good policy kept."""
    city = City(now=int(time.time()))
    paper = transport.pack(city.issue().to_cbor())
    bundle, root, policy = tmp_path / "b.cbor", tmp_path / "r.json", tmp_path / "policy.json"
    bundle.write_bytes(city.bundle())
    root.write_text(city.root.to_json())
    policy.write_text('{"paper": "reject"}')
    lines = "\n".join([paper, "#edit", paper, "#break", paper]) + "\n"
    with _at_work(tmp_path, "library", bundle, root, "--policy", str(policy)) as counter:
        assert counter.stdin and counter.stdout and counter.stderr
        codes = []
        try:
            for line in lines.splitlines():
                if line == "#edit":  # as an administrator would: whole, in one rename
                    (tmp_path / "new.json").write_text('{"paper": "accept"}')
                    os.replace(tmp_path / "new.json", policy)
                    continue
                if line == "#break":
                    (tmp_path / "new.json").write_text('{"paper": "maybe"}')
                    os.replace(tmp_path / "new.json", policy)
                    continue
                counter.stdin.write(line.encode() + b"\n")
                counter.stdin.flush()
                codes.append(json.loads(counter.stdout.readline())["code"])
            counter.stdin.close()
            assert counter.wait(timeout=60) == 0
        finally:
            counter.kill()
        err = counter.stderr.read().decode()
    assert codes == ["paper_not_accepted", "accepted", "accepted"]
    assert "[policy_invalid]" in err and "Still using the previous setup" in err


@pytest.mark.parametrize("accepted", [True, False])
def test_a_reader_that_stops_early_is_not_a_disk_error(tmp_path: Path, accepted: bool) -> None:
    """``verify --batch log | head -1``: the pipe closes under a long output. No traceback, no
    disk error, and the exit status is still the whole batch's decision (it was click's 1 for
    a closed pipe, "something was refused", with every line accepted)."""
    city = City()
    line = city.issue_text(None, example_claims()) if accepted else "PU1:NOPE"
    (tmp_path / "scans.log").write_text(f"{line}\n" * 3_000)
    proc = subprocess.Popen([sys.executable, "-m", "pasaporte", *_counter(tmp_path, city),
                             "--batch", str(tmp_path / "scans.log")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == (0 if accepted else 1), err
    assert json.loads(first)["line"] == 1
    assert err == "", err


def test_a_live_scan_session_ends_when_its_reader_goes(tmp_path: Path) -> None:
    """A scanner still connected (its input never ends) and the program reading the results
    gone: the session ends at the next scan, status 0, rather than going on with no one to
    answer."""
    city = City()
    paper = city.issue_text(None, example_claims())
    proc = subprocess.Popen([sys.executable, "-m", "pasaporte", *_counter(tmp_path, city),
                             "--scan"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(f"{paper}\n".encode())
    proc.stdin.flush()
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes; the scanner stays
    for _ in range(3):
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(f"{paper}\n".encode())
            proc.stdin.flush()
    assert proc.wait(timeout=60) == 0
    err = proc.stderr.read().decode()
    proc.stdin.close()
    proc.stderr.close()
    assert json.loads(first)["decision"] == "accepted" and "Traceback" not in err, err
    # said (the clerk saw the session stop with no reason), and the scan that found the
    # reader gone, answered to no one, not counted as accepted
    assert "[scan_reader_gone]" in err and "Scans: 1 " in err, err


def test_a_scan_session_whose_reader_goes_ends_as_at_the_end_of_input(tmp_path: Path) -> None:
    """``verify --scan < scans.log | head -1``: the session ends (nobody reads its results) with
    its count and status 0, as at the end of input, not click's 1."""
    city = City()
    paper = city.issue_text(None, example_claims())
    (tmp_path / "scans.log").write_text(f"{paper}\n" * 3_000)
    with open(tmp_path / "scans.log", "rb") as scans:
        proc = subprocess.Popen([sys.executable, "-m", "pasaporte", *_counter(tmp_path, city),
                                 "--scan"], stdin=scans, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(timeout=60) == 0, err
    assert json.loads(first)["decision"] == "accepted"
    assert "Traceback" not in err and "Scans:" in err, err


def test_a_counter_policy_file_changes_the_decision(tmp_path: Path, run: Run) -> None:
    city = City()
    paper = city.issue_text(None, example_claims())
    counter = [*_counter(tmp_path, city), "--text", paper]  # transit: paper with photo ID
    code, out, _ = run(*counter)
    assert code == 0 and json.loads(out)["warnings"][0]["code"] == "paper_check_id"
    (tmp_path / "policy.json").write_text('{"paper": "reject"}')
    code, out, _ = run(*counter, "--policy", str(tmp_path / "policy.json"))
    assert code == 1 and json.loads(out)["code"] == "paper_not_accepted"
    (tmp_path / "policy.json").write_text('{"paper": "reject", "paper": "accept"}')
    code, _, err = run(*counter, "--policy", str(tmp_path / "policy.json"))
    assert code == 2 and "[policy_duplicate_key]" in err


def _scans_between_setups(counter: subprocess.Popen[bytes], code: str, bundle: Path,
                          setups: list[bytes | None]) -> tuple[list[str], str]:
    """Scan ``code`` at a counter at work once per setup in ``setups``, each put in place of
    ``bundle`` first (whole, in one rename, as a trust sync does; ``None``: as it is); the
    codes it answered and what it said on stderr, once the session ended."""
    assert counter.stdin and counter.stdout and counter.stderr
    codes = []
    try:
        for setup in setups:
            if setup is not None:
                staged = bundle.with_name("new.cbor")
                staged.write_bytes(setup)
                os.replace(staged, bundle)
            counter.stdin.write(code.encode() + b"\n")
            counter.stdin.flush()
            codes.append(json.loads(counter.stdout.readline())["code"])
        counter.stdin.close()
        assert counter.wait(timeout=60) == 0  # a session's end, whatever it scanned
    finally:
        counter.kill()
    return codes, counter.stderr.read().decode()


def test_the_counter_at_work_never_goes_back_to_an_older_bundle(tmp_path: Path) -> None:
    """A counter keeps the newest bundle per city: an older copy put in place while it runs
    (a backup restored, a replayed sync) would let a passport revoked since through again.
    It is refused, the newer bundle kept; a newer one still counts."""
    city = City(now=int(time.time()))
    paper = transport.pack(city.issue().to_cbor())  # status index 1
    bundle, root = tmp_path / "b.cbor", tmp_path / "r.json"
    old = city.bundle(version=1)
    city.revocation.set(1)
    bundle.write_bytes(city.bundle(version=2))
    root.write_text(city.root.to_json())

    with _at_work(tmp_path, "transit", bundle, root) as counter:
        codes, err = _scans_between_setups(counter, paper, bundle,
                                           [None, old, city.bundle(version=3)])
    assert codes == ["revoked", "revoked", "revoked"]
    assert "[bundle_rollback]" in err and "version 1, older than the version 2" in err
    assert "versión 1, más vieja que la 2" in err
    assert "Still using the previous setup (Mexicali v2)" in err
    assert "Setup updated: Mexicali v3" in err


def test_a_city_dropped_from_the_setup_keeps_its_newest_version(tmp_path: Path) -> None:
    """Another city's bundle copied over a city's file: the reload is refused (the city's
    residents were refused from then on, and its older bundle put back after was taken, with
    the passports revoked since). The session keeps each city's newest version."""
    mx, cx = City(now=int(time.time())), City(city="Calexico", country="US", code="USCAL",
                                                now=int(time.time()))
    paper = transport.pack(mx.issue().to_cbor())  # status index 1
    old = mx.bundle(version=1)
    mx.revocation.set(1)
    mxb, cxb, mxr, cxr = (tmp_path / n for n in ("mx.cbor", "cx.cbor", "mx.json", "cx.json"))
    mxb.write_bytes(mx.bundle(version=2))
    cxb.write_bytes(cx.bundle(version=1))
    mxr.write_text(mx.root.to_json())
    cxr.write_text(cx.root.to_json())

    with _at_work(tmp_path, "transit", mxb, mxr, "--bundle", str(cxb), "--trust-root",
                  str(cxr)) as counter:
        codes, err = _scans_between_setups(counter, paper, mxb,
                                           [None, cx.bundle(version=1), old])
    assert codes == ["revoked", "revoked", "revoked"], err
    assert "[bundle_city_dropped]" in err and "no longer holds the bundle of Mexicali" in err
    assert "[bundle_rollback]" in err and "version 1, older than the version 2" in err
    assert "Setup updated" not in err


def test_the_service_is_taken_by_its_spanish_or_english_name(tmp_path: Path, run: Run) -> None:
    """As the wallet takes it (``present --for Biblioteca``): a clerk types the service as
    the counter's sign says it."""
    city = City()
    paper = city.issue_text(None, example_claims())
    counter = _counter(tmp_path, city)
    at = counter.index("transit")
    for name in ("Transporte", "TRANSPORTE", "TRANSIT", " Transit "):
        code, out, err = run(*counter[:at], name, *counter[at + 1:], "--text", paper)
        assert code == 0 and json.loads(out)["decision"] == "accepted", (name, out, err)
    code, out, err = run(*counter[:at], "casino", *counter[at + 1:], "--text", paper)
    assert code == 2 and "[service_unknown]" in err, err


def test_a_reader_gone_before_the_answer_leaves_the_decision_as_the_status(
        tmp_path: Path) -> None:
    """``verify --text … | head -c0``, a script that reads nothing: the pipe is closed when the
    answer is written, and the exit status is still the decision (0 accepted, 1 refused), not
    click's 1 for a closed pipe, which a script reads as "refused"."""
    city = City()
    paper = city.issue_text(None, example_claims())
    for text, decision in ((paper, 0), ("PU1:NOPE", 1)):
        proc = subprocess.Popen([sys.executable, "-m", "pasaporte", *_counter(tmp_path, city),
                                 "--text", text], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # gone before the command has even started
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(timeout=60) == decision, err
        assert "Traceback" not in err and "Exception ignored" not in err, err


def test_a_warning_on_the_counters_screen_carries_its_code(tmp_path: Path, run: Run) -> None:
    city = City()
    paper = city.issue_text(None, example_claims())
    counter = [a for a in _counter(tmp_path, city) if a != "--json"]  # transit: paper, photo ID
    code, out, _ = run(*counter, "--text", paper)
    assert code == 0
    (warning,) = [line for line in out.splitlines() if line.startswith("  ! ")]
    assert warning.endswith("  [paper_check_id]") and " / " in warning, out
