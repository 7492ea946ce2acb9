"""A counter's ``verify --scan`` session over a working day: a code answering its nonce counts
once, a log reader that goes away stops nothing, and a scanner's terminal that goes ends the
session as the end of its input does. Each in its own process, as a kiosk runs it."""

from __future__ import annotations

import io
import json
import os
import pty
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cbor2
import nacl.signing
import pytest

from credential import transport
from credential.times import rfc3339
from tests.conftest import Run
from tests.factory import NOW, City, example_claims, presentation

LIB = ["residence", "library"]


def _counter(tmp_path: Path, city: City, *extra: str) -> list[str]:
    (tmp_path / "b.cbor").write_bytes(city.bundle())
    (tmp_path / "r.json").write_text(city.root.to_json())
    return [sys.executable, "-m", "pasaporte", "verify", "--service", "library", "--bundle",
            str(tmp_path / "b.cbor"), "--trust-root", str(tmp_path / "r.json"), "--at",
            rfc3339(NOW), *extra, "--scan", "--json"]


def test_a_code_answering_the_counters_nonce_is_accepted_once(tmp_path: Path) -> None:
    """The nonce "shuts replay out": yet the same code (a screenshot passed down the queue)
    was accepted at every scan of the session within the freshness window."""
    city, holder = City(), nacl.signing.SigningKey.generate()
    cred = city.issue(holder=holder)
    code = presentation(cred, holder, "library", LIB, nonce=b"8F3K")
    other = presentation(cred, holder, "library", LIB, nonce=b"8F3K", now=NOW - 5)
    # the same code as a scanner may type it otherwise (caps lock, an AIM prefix) is the same
    done = subprocess.run(_counter(tmp_path, city, "--nonce", "8F3K"),
                          input=f"{code}\r\n{code}\n{other}\n{code.lower()}\n]Q1{code}\n",
                          capture_output=True, text=True, timeout=120, check=False)
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["code"] for r in results] == ["accepted", "presentation_replayed", "accepted",
                                            "presentation_replayed",
                                            "presentation_replayed"], done.stderr
    # nor is it in CBOR that differs only where nothing is signed (COSE's optional tag 18)
    tagged = subprocess.run(_counter(tmp_path, city, "--nonce", "8F3K"),
                            input=f"{code}\n{_tagged(code)}\n", capture_output=True, text=True,
                            timeout=120, check=False)
    assert [json.loads(r)["code"] for r in tagged.stdout.splitlines()] == [
        "accepted", "presentation_replayed"], tagged.stderr
    assert "captura de pantalla" in results[1]["message"]["es"]
    assert "counts once" in results[1]["message"]["en"]
    assert "accepted: 2, rechazados / rejected: 3" in done.stderr
    # without a nonce, as before: the freshness window alone limits a replay
    again = subprocess.run(_counter(tmp_path, city), input=f"{code}\n{code}\n".replace(
        code, presentation(cred, holder, "library", LIB)), capture_output=True, text=True,
        timeout=120, check=False)
    assert [json.loads(x)["code"] for x in again.stdout.splitlines()] == ["accepted"] * 2


def test_a_scanner_log_replayed_with_the_nonce_refuses_the_replay_as_the_session_did(
        tmp_path: Path, run: Run) -> None:
    """``--batch`` replaying a ``--scan`` log: the code a session refused as replayed was
    accepted twice."""
    city, holder = City(), nacl.signing.SigningKey.generate()
    code = presentation(city.issue(holder=holder), holder, "library", LIB, nonce=b"8F3K")
    (tmp_path / "scans.log").write_text(f"{code}\n{code.lower()}\n")
    args = _counter(tmp_path, city, "--nonce", "8F3K")[3:-2]  # (not the process, not --scan)
    status, out, _ = run(*args, "--batch", str(tmp_path / "scans.log"))
    assert [json.loads(line)["code"] for line in out.splitlines()] == [
        "accepted", "presentation_replayed"] and status == 1


def _tagged(code: str) -> str:
    """``code`` with its credential's COSE_Sign1 under tag 18 (RFC 9052 §4.2: either way)."""
    envelope = cbor2.loads(transport.unpack(code))
    envelope[0] = cbor2.CBORTag(18, envelope[0])
    return transport.pack(cbor2.dumps(envelope))


def test_a_paper_passport_scanned_again_under_a_nonce_is_no_replay(tmp_path: Path) -> None:
    """A paper passport answers no nonce and is the same sheet at every scan: a clerk who
    scanned it twice was told it was a screenshot, and to have the resident make a new one."""
    city = City()
    paper = city.issue_text(None, example_claims())
    done = subprocess.run(_counter(tmp_path, city, "--nonce", "8F3K"), input=f"{paper}\n" * 2,
                          capture_output=True, text=True, timeout=120, check=False)
    assert [json.loads(r)["code"] for r in done.stdout.splitlines()] == ["accepted"] * 2


def test_a_log_reader_that_goes_stops_no_scan(tmp_path: Path) -> None:
    """stderr's reader gone (a log helper that died): the next notice or the session's count
    raised a broken pipe, and the counter stopped answering, exit 1."""
    city = City()
    paper = city.issue_text(None, example_claims())
    proc = subprocess.Popen(_counter(tmp_path, city), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stderr.readline()  # "Ready to scan"
    proc.stderr.close()
    proc.stdin.write(f"{paper}\n".encode() * 3)
    proc.stdin.close()
    results = proc.stdout.read().decode().splitlines()
    assert proc.wait(timeout=60) == 0
    proc.stdout.close()
    assert [json.loads(r)["decision"] for r in results] == ["accepted"] * 3


def test_a_scanners_terminal_that_goes_ends_the_session_with_its_count(tmp_path: Path) -> None:
    """Its terminal gone, a read gives EIO: that ended the session as a disk error, exit 1,
    "nothing half done was saved"; it is the end of the input."""
    city = City()
    paper = city.issue_text(None, example_claims())
    main, side = pty.openpty()
    proc = subprocess.Popen(_counter(tmp_path, city), stdin=side, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    os.close(side)
    assert proc.stdout is not None and proc.stderr is not None
    os.write(main, f"{paper}\n".encode())
    first = proc.stdout.readline()
    os.close(main)  # the window closed
    assert proc.wait(timeout=60) == 0
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    assert json.loads(first)["decision"] == "accepted"
    assert "Scans: 1" in err and "file_error" not in err, err


def test_a_session_leaves_the_signals_as_it_found_them(tmp_path: Path, run: Run,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Its end holds the cancelling signals back (a SIGHUP with the terminal's going must not
    cut the count short): left held, Ctrl-C did nothing in the process that ran it after."""
    city = City()
    paper = city.issue_text(None, example_claims())
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(f"{paper}\n".encode())))
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    code, out, err = run(*_counter(tmp_path, city)[3:])
    assert code == 0 and json.loads(out)["decision"] == "accepted", err
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def _limited(size: int) -> None:
    """(In the child) no file grows past ``size`` bytes: EFBIG, as a disk with no room."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))


@pytest.mark.parametrize("disk", ["/dev/full", "file size limit"])
def test_a_results_file_that_cannot_be_written_is_an_error(tmp_path: Path, disk: str) -> None:
    """Its output on a full disk, the session ended at exit 0 with scans unanswered: only the
    scanner's terminal going ends it as its input's end. And with its output buffered (no
    PYTHONUNBUFFERED, as a kiosk runs it), what was left to write at exit was a traceback,
    exit 120."""
    city = City()
    paper = city.issue_text(None, example_claims())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    target = "/dev/full" if disk == "/dev/full" else str(tmp_path / "results.jsonl")
    with open(target, "w") as out:
        done = subprocess.run(_counter(tmp_path, city), input=f"{paper}\n" * 40, stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False,
                              env=env, preexec_fn=None if disk == "/dev/full" else (
                                  lambda: _limited(4096)))
    assert done.returncode == 1 and "[scan_output_failed]" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_a_closed_terminal_window_ends_the_session_with_its_count(tmp_path: Path) -> None:
    """The scanner's terminal is the session's controlling one, and closing it sends SIGHUP as
    the read fails: the signal landed as the session ended, "cancelled", 130, no count."""
    city = City()
    paper = city.issue_text(None, example_claims())
    args = _counter(tmp_path, city)[:-1]  # as a clerk reads it, no --json
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    pid, main = pty.fork()
    if pid == 0:  # the counter, its controlling terminal the pty
        try:
            os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
            os.execv(args[0], args)
        finally:
            os._exit(127)
    try:
        deadline = time.monotonic() + 60
        while b"Ready to scan" not in (err.read_bytes() if err.exists() else b""):
            assert time.monotonic() < deadline, "the counter never got ready"
            time.sleep(0.05)
        os.write(main, f"{paper}\n".encode())
        while "[accepted]" not in (out.read_text() if out.exists() else ""):
            assert time.monotonic() < deadline, "the scan was never answered"
            time.sleep(0.05)
    finally:
        os.close(main)  # the window closed
    _, status = os.waitpid(pid, 0)
    said = err.read_text()
    assert os.waitstatus_to_exitcode(status) == 0, said
    assert "Scans: 1" in said and "[cancelled]" not in said, said


def test_a_closed_terminal_that_also_showed_the_results_ends_the_session_well(
        tmp_path: Path) -> None:
    """The clerk's one window (the scanner's input and every line shown): closed, the count
    written to it failed as well (EIO), and so did the error said about that: exit 1."""
    city = City()
    paper = city.issue_text(None, example_claims())
    args = _counter(tmp_path, city)[:-1]
    pid, main = pty.fork()
    if pid == 0:
        try:
            os.execv(args[0], args)
        finally:
            os._exit(127)
    try:
        deadline, shown = time.monotonic() + 60, b""
        while b"Ready to scan" not in shown:
            assert time.monotonic() < deadline, shown
            shown += os.read(main, 4096)
        os.write(main, f"{paper}\n".encode())
        while b"[accepted]" not in shown:
            assert time.monotonic() < deadline, shown
            shown += os.read(main, 4096)
    finally:
        os.close(main)  # the window closed
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_accepted_code_is_remembered_as_long_as_it_could_pass_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For as long as the engine would accept it (its iat plus the freshness window, by the
    clock it verifies at), not for the moment the same code happens to be scanned again (a
    screenshot passed down the queue comes minutes later); nor forgotten early by a window
    narrowed for a while and put back, or by the wall clock under a fixed ``--at``."""
    import dataclasses

    from verifier import cli
    from verifier.policy import Policy

    city, holder = City(), nacl.signing.SigningKey.generate()
    code = presentation(city.issue(holder=holder), holder, "library", LIB, nonce=b"8F3K")
    policy = Policy.for_service("library")
    window = policy.freshness_s
    clock = [1000.0]
    monkeypatch.setattr("verifier.cli.time.monotonic", lambda: clock[0])
    replays = cli._Replays()
    assert replays.check(code, policy, NOW) is None  # accepted: remembered from now
    for later in (2, window):
        clock[0] = 1000.0 + later
        assert replays.check(code, policy, NOW + later) == later
    narrow = dataclasses.replace(policy, freshness_s=2, clock_skew_s=0)
    assert replays.check(code, narrow, NOW + window) == window  # narrowed: still known
    assert replays.check(code, policy, NOW + window) == window  # and put back
    # under --at the verifying clock stands still: however long the session runs
    clock[0] = 1000.0 + 10 * window
    assert replays.check(code, policy, NOW + window) == 10 * window
    # past what the engine itself would accept: let go
    assert replays.check(code, policy, NOW + window + 1) is None
