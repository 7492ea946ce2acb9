"""``issuer bulk``: the residents CSV shape, all-or-nothing validation, verified output."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from issuer.store import IssuerStore, bulk_fingerprints
from tests.conftest import Run
from tests.factory import EXAMPLES
from tests.issuer.conftest import init_office

SAMPLE = EXAMPLES / "residents-sample.csv"
REPO = Path(__file__).resolve().parents[2]



def test_sample_csv_issues_verifiable_paper_passports(homes: dict[str, Path], passphrase: str,
                                                      run: Run, tmp_path: Path) -> None:
    home = homes["issuer"]
    init_office(run, home)
    out = tmp_path / "out"
    code, out_text, err = run("issuer", "bulk", str(SAMPLE), "--out-dir", str(out), "--qr",
                            "--home", str(home))
    assert code == 0 and out_text.startswith("3 pasaportes emitidos / passports issued"), err
    index = list(csv.DictReader(io.StringIO((out / "index.csv").read_text())))
    assert [r["line"] for r in index] == ["2", "3", "4"]
    assert len({r["credential_id"] for r in index}) == 3
    assert sorted(_issued(home)) == sorted(r["credential_id"] for r in index)
    run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(home))
    run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(home))
    names = []
    for r in index:  # transit: paper with photo ID, so the counter shows the names
        code, result, _ = run("verify", "--service", "transit", "--bundle",
                              str(tmp_path / "b.cbor"), "--trust-root", str(tmp_path / "r.json"),
                              "--image", str(out / f"{r['credential_id']}.png"), "--json")
        decision = json.loads(result)
        assert code == 0 and decision["paper"] is True
        assert decision["credential_id"] == r["credential_id"]
        shown = {c["claim"]: c["value"] for c in decision["claims"]}
        names.append((shown["given_name"], shown["family_name"]))
    # each row's resident, in file order: accents and two family names survive the CSV path
    assert names == [("Ana Sofía", "Núñez Peña"), ("Luis", "García"), ("Chen", "Wu Martínez")]


def test_one_bad_row_issues_nothing(homes: dict[str, Path], passphrase: str, run: Run,
                                    tmp_path: Path) -> None:
    home = homes["issuer"]
    init_office(run, home)
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace("1950-07-19", "1950-13-45")
    lines[3] = lines[3].replace("student", "vip")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(bad), "--out-dir", str(tmp_path / "o"),
                       "--home", str(home))
    assert code == 2 and "line 3" in err and "birth_date" in err  # every bad row is named
    assert "line 4" in err and "fare_category" in err and "line 2" not in err
    assert not (tmp_path / "o").exists()
    with IssuerStore.open(home).engine.connect() as db:
        from issuer.store import credentials

        assert db.execute(credentials.select()).first() is None


def test_the_print_folder_is_never_the_offices_own(homes: dict[str, Path], passphrase: str,
                                                   run: Run) -> None:
    """``--out-dir <office home>`` put paper passports beside ``issuer.db``: the folder copied
    to a stick for the print shop carried the sealed keys and every record with it."""
    home = homes["issuer"]
    init_office(run, home)
    for out in (home, home / "print"):
        code, stdout, err = run("issuer", "bulk", str(SAMPLE), "--out-dir", str(out),
                                "--home", str(home))
        assert (code, stdout) == (2, "") and err.startswith("[output_in_office_home] --out-dir")
        assert not (home / "print").exists() and not list(home.glob("*.txt"))
    assert _issued(home) == []


def test_missing_columns(homes: dict[str, Path], passphrase: str, run: Run,
                         tmp_path: Path) -> None:
    init_office(run, homes["issuer"])
    (tmp_path / "x.csv").write_text("given_name,family_name\nA,B\n")
    code, _, err = run("issuer", "bulk", str(tmp_path / "x.csv"), "--out-dir",
                       str(tmp_path / "o"), "--home", str(homes["issuer"]))
    assert code == 2 and "birth_date" in err and "[bulk_csv_columns]" in err, err
    assert not (tmp_path / "o").exists() and _issued(homes["issuer"]) == []


def test_a_full_status_list_rolls_over_to_a_new_one(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full list starts a new one for the same key (no forced rotation), every list stays in
    the bundle, and a revocation in either reaches the counter."""
    from issuer.store import credentials

    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    monkeypatch.setattr("issuer.store.LIST_SIZE", 8)  # the smallest a status list can be
    residents = _many(tmp_path, 10)
    assert run("issuer", "bulk", str(residents), "--out-dir", str(out), "--home", str(home))[0] == 0
    with IssuerStore.open(home).engine.connect() as db:
        lists = dict(db.execute(sa.select(credentials.c.id, credentials.c.list_id)).all())
    assert sorted(lists.values()) == [1] * 8 + [2] * 2
    keys = json.loads(run("issuer", "keys", "--json", "--home", str(home))[1])
    assert len(keys) == 1  # the same office key signs into both lists
    in_first = next(cid for cid, list_id in lists.items() if list_id == 1)
    in_second = next(cid for cid, list_id in lists.items() if list_id == 2)
    for cid in (in_first, in_second):
        assert run("issuer", "revoke", cid, "--home", str(home))[0] == 0
    run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(home))
    run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(home))
    (tmp_path / "scans.txt").write_text("".join((out / f"{cid}.txt").read_text()
                                                for _, cid in _index(out)))
    code, results, _ = run("verify", "--service", "transit", "--bundle", str(tmp_path / "b.cbor"),
                           "--trust-root", str(tmp_path / "r.json"),
                           "--batch", str(tmp_path / "scans.txt"))
    codes = {cid: json.loads(line)["code"]
             for (_, cid), line in zip(_index(out), results.splitlines(), strict=True)}
    assert codes[in_first] == codes[in_second] == "revoked"
    assert sorted(codes.values()) == ["accepted"] * 8 + ["revoked"] * 2 and code == 1


def _many(tmp_path: Path, rows: int) -> Path:
    """A residents CSV of ``rows`` different residents (the sample's, born on other days)."""
    header, *body = SAMPLE.read_text(encoding="utf-8").splitlines()
    lines = [header]
    for i in range(rows):
        cells = body[i % len(body)].split(",")
        cells[2] = (date(1950, 1, 1) + timedelta(days=i)).isoformat()  # birth_date
        lines.append(",".join(cells))
    path = tmp_path / f"residents-{rows}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _issued(home: Path) -> list[str]:
    from issuer.store import credentials

    with IssuerStore.open(home).engine.connect() as db:
        return [r[0] for r in db.execute(credentials.select().with_only_columns(credentials.c.id))]


def _index(out: Path) -> list[tuple[str, str]]:
    return [(r["line"], r["credential_id"])
            for r in csv.DictReader(io.StringIO((out / "index.csv").read_text()))]


@pytest.fixture
def issued_sample(homes: dict[str, Path], passphrase: str, run: Run,
                  tmp_path: Path) -> tuple[Path, Path, tuple[str, ...]]:
    """The sample CSV issued once into ``out``: (office home, out, the bulk command)."""
    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    args = ("issuer", "bulk", str(SAMPLE), "--out-dir", str(out), "--home", str(home))
    assert run(*args)[0] == 0
    return home, out, args


def test_a_restored_office_names_no_passport_of_its_predecessor_as_left_out(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """The lost office's passports, unknown to the restored one, are set aside in superseded/
    and their rows issued anew: the notice also named them "still valid: revoke them", which
    "issuer revoke" cannot do (1977 of them after one restore)."""
    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    assert run("issuer", "backup", "--out", str(tmp_path / "office.bak"),
               "--home", str(home))[0] == 0
    assert run("issuer", "bulk", str(SAMPLE), "--out-dir", str(out), "--home", str(home))[0] == 0
    lost = set(dict(_index(out)).values())
    restored = tmp_path / "restored"
    assert run("issuer", "restore", "--from", str(tmp_path / "office.bak"), "--home",
               str(restored), "--no-ledger")[0] == 0
    code, stdout, err = run("issuer", "bulk", str(SAMPLE), "--out-dir", str(out), "--home",
                            str(restored))
    assert code == 0 and stdout.startswith("3 "), err
    assert "[bulk_rows_left_out]" not in err, err
    assert {p.stem for p in (out / "superseded").glob("*.txt")} == lost


def test_running_the_same_file_again_issues_nothing_twice(
        issued_sample: tuple[Path, Path, tuple[str, ...]], run: Run, tmp_path: Path) -> None:
    home, out, args = issued_sample
    first = _index(out)
    code, stdout, err = run(*args)
    assert code == 0 and stdout.startswith("0 ") and "3 ya emitidos" in err
    assert _index(out) == first and len(_issued(home)) == 3


def test_a_killed_run_resumes_and_every_row_is_issued_exactly_once(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """SIGKILL a real ``issuer bulk`` process at random points, again and again, then let it
    finish: one credential per row, every file whole, no partial file left, all verifiable."""
    home, out, rows = homes["issuer"], tmp_path / "out", 120  # more than a slow poll lets by
    init_office(run, home)
    residents = _many(tmp_path, rows)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    command = [sys.executable, "-m", "pasaporte", "issuer", "bulk", str(residents),
               "--out-dir", str(out), "--home", str(home)]
    rng = random.Random(7)
    for _ in range(3):
        target = len(list(out.glob("*.txt"))) + rng.randint(1, 8)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(list(out.glob("*.txt"))) < target and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(_issued(home)) < rows  # the kills did cut the run short
    code, _, err = run(*command[3:])
    assert code == 0, err
    index = _index(out)
    assert [int(r) for r, _ in index] == list(range(2, rows + 2))
    assert sorted(cid for _, cid in index) == sorted(_issued(home))  # one per row, no orphan
    assert not list(out.glob("*.partial")) and not list(out.glob(".*.tmp"))
    run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(home))
    run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(home))
    batch = tmp_path / "scans.txt"
    batch.write_text("".join((out / f"{cid}.txt").read_text() for _, cid in index))
    code, results, _ = run("verify", "--service", "transit", "--bundle", str(tmp_path / "b.cbor"),
                           "--trust-root", str(tmp_path / "r.json"), "--batch", str(batch))
    decisions = [json.loads(line)["decision"] for line in results.splitlines()]
    assert decisions == ["accepted"] * rows


# Groups are of 1, 2, 4, 8, … rows (``issuer.bulk._groups``): the 10th partial file is the 3rd of
# the fourth group, and the 4th folder flush is that group's, just before its commit.
_KILL_IN_GROUP = {
    "writing its files": ("_write_partial", 10, 7),  # (what, at which call, rows committed)
    "about to commit": ("fsync_path", 4, 7),
    "renaming its files": ("_finish", 10, 15),
}


@pytest.mark.parametrize("at", sorted(_KILL_IN_GROUP))
def test_a_run_killed_in_the_middle_of_a_group_resumes_exactly_once(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path, at: str) -> None:
    """SIGKILL in the middle of a group of rows issued in one transaction: while its partial
    files are being written, once they all are (before the commit), or after the commit while
    they are being renamed. Run again, every row has exactly one live credential, every file in
    the folder is a whole credential the store has, and no partial file remains."""
    from credential.passport import decode_text
    from issuer.store import credentials

    home, out, rows = homes["issuer"], tmp_path / "out", 40
    init_office(run, home)
    residents = _many(tmp_path, rows)
    what, call, committed = _KILL_IN_GROUP[at]
    script = (
        "import os, signal, sys\n"
        "from issuer import bulk\n"
        "from pasaporte.cli import main\n"
        f"real, calls = bulk.{what}, []\n"
        "def counted(*args):\n"
        "    calls.append(1)\n"
        f"    if len(calls) == {call}: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(*args)\n"
        f"bulk.{what} = counted\n"
        "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run(
        [sys.executable, "-c", script, "issuer", "bulk", str(residents), "--out-dir", str(out),
         "--home", str(home)], env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2])),
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(_issued(home)) == committed  # the groups before; of this one, all or nothing
    assert list(out.glob("*.partial"))  # the killed group's files, left mid-way

    code, stdout, err = run("issuer", "bulk", str(residents), "--out-dir", str(out),
                            "--home", str(home))
    assert code == 0, err
    assert stdout.startswith(f"{rows - committed} ") and f"{committed} ya emitidos" in err
    index = _index(out)
    assert [int(line) for line, _ in index] == list(range(2, rows + 2))
    issued = _issued(home)
    assert len(issued) == rows and sorted(cid for _, cid in index) == sorted(issued)
    with IssuerStore.open(home).engine.connect() as db:
        assert set(db.execute(sa.select(credentials.c.status)).scalars()) == {"valid"}
        named = sorted(db.execute(sa.select(bulk_fingerprints.c.credential_id)).scalars())
    assert named == sorted(issued)  # each row's one credential, and no other
    files = {p.name for p in out.iterdir()}
    assert files == {f"{cid}.txt" for cid in issued} | {"index.csv", ".pasaporte-bulk.lock"}
    for cid in issued:  # whole, and the credential its name says
        assert decode_text((out / f"{cid}.txt").read_text()).payload.credential_id == cid


def test_a_partial_file_is_finished_or_removed(
        issued_sample: tuple[Path, Path, tuple[str, ...]], run: Run, tmp_path: Path) -> None:
    """What a crash between writing and committing (or committing and renaming) leaves."""
    home, out, args = issued_sample
    committed, other = _index(out)[0][1], _index(out)[1][1]
    text = (out / f"{committed}.txt").read_text()
    (out / f"{committed}.txt").rename(out / f"{committed}.txt.partial")
    (out / "AAAAAAAAAAAAA.txt.partial").write_text("PU1:never-committed\n")
    (out / f".{other}.txt.partial.x1y2.tmp").write_text("half a credential")
    (out / f"{other}.txt.partial").write_text("junk that must not replace a good file\n")
    good = (out / f"{other}.txt").read_text()
    (out / "BBBBBBBBBBBBA.txt").write_text("PU1:a file this office never issued\n")
    (out / "notes.txt").write_text("the clerk's notes stay where they are\n")
    assert run(*args)[0] == 0
    assert (out / f"{committed}.txt").read_text() == text  # finished: the committed one
    assert (out / f"{other}.txt").read_text() == good
    assert not (out / "AAAAAAAAAAAAA.txt").exists()  # never committed: not circulated
    assert not list(out.glob("*.partial")) and not list(out.glob(".*.tmp"))
    assert (out / "superseded" / "BBBBBBBBBBBBA.txt").exists() and (out / "notes.txt").exists()
    assert len(_issued(home)) == 3


def test_a_failed_issuance_leaves_no_signed_text_behind(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The partial file is written inside the transaction: if the commit then fails (a full
    disk), the text of a credential the store never recorded must not stay on disk."""
    from issuer.store import IssuerStore as Store

    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    real_issue = Store.issue_many

    def failing_commit(self: Store, *args: Any, **kwargs: Any) -> Any:
        written = kwargs["before_commit"]

        def then_fail(creds: Any) -> None:
            written(creds)  # every partial file of the group, on the disk
            raise OSError(28, "No space left on device")

        return real_issue(self, *args, **{**kwargs, "before_commit": then_fail})

    monkeypatch.setattr(Store, "issue_many", failing_commit)
    code, _, err = run("issuer", "bulk", str(SAMPLE), "--out-dir", str(out), "--home", str(home))
    assert code == 1 and "file_error" in err
    assert not list(out.glob("*.txt*")) and _issued(home) == []


def test_lost_files_are_named_and_issued_again_only_once_revoked(
        issued_sample: tuple[Path, Path, tuple[str, ...]], run: Run, tmp_path: Path) -> None:
    home, out, args = issued_sample
    (row, lost), *_ = _index(out)
    (out / f"{lost}.txt").unlink()
    code, _, err = run(*args)
    # the office's own records, not a mistyped command: a refusal (exit 1)
    assert code == 1 and "bulk_files_lost" in err and lost in err and "revoke them" in err
    elsewhere = ("issuer", "bulk", str(SAMPLE), "--out-dir", str(tmp_path / "other"),
                 "--home", str(home))
    code, _, err = run(*elsewhere)  # a mistyped --out-dir issues nothing a second time
    assert code == 1 and "3 passport(s)" in err and len(_issued(home)) == 3
    assert run("issuer", "revoke", lost, "--home", str(home))[0] == 0  # as the notice says
    code, stdout, _ = run(*args)
    assert code == 0 and stdout.startswith("1 ")
    again = dict(_index(out))[row]
    assert again != lost and (out / f"{again}.txt").exists() and len(_issued(home)) == 4


@pytest.mark.parametrize("reason", ["superseded", "fallecido", "fraud", "moved_away",
                                    "holder_request"])
def test_a_passport_revoked_for_good_is_not_issued_again(
        issued_sample: tuple[Path, Path, tuple[str, ...]], run: Run, reason: str) -> None:
    """A renewal at the desk (``issue --replaces``: superseded), a death, fraud: the day's
    sheet run again issued the row anew, without a word, and the resident held two passports
    (or the deceased one)."""
    home, out, args = issued_sample
    (row, gone), *_ = _index(out)
    assert run("issuer", "revoke", gone, "--reason", reason, "--home", str(home))[0] == 0
    code, stdout, err = run(*args)
    assert code == 0 and stdout.startswith("0 "), err
    assert "[bulk_rows_withdrawn]" in err and f"{row} ({gone})" in err, err
    assert "no se emitieron de nuevo" in err and "were not issued again" in err
    assert len(_issued(home)) == 3
    assert not (out / f"{gone}.txt").exists() and (out / "revoked" / f"{gone}.txt").exists()
    assert row not in dict(_index(out))  # its passport is in no file of the print folder
    code, stdout, err = run(*args, "--qr")  # and so on every run after, images drawn or not
    assert code == 0 and stdout.startswith("0 ") and "[bulk_rows_withdrawn]" in err, err
    assert "[bulk_rows_left_out]" not in err, err
    assert not (out / f"{gone}.png").exists() and len(list(out.glob("*.png"))) == 2


def test_qr_images_are_drawn_on_every_core_and_redrawn_when_missing(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    from credential import qr

    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    args = ("issuer", "bulk", str(_many(tmp_path, 20)), "--out-dir", str(out), "--qr",
            "--home", str(home))
    assert run(*args)[0] == 0  # 20 images: more than one worker's worth
    index = _index(out)
    for _, cid in index:
        assert qr.decode_image((out / f"{cid}.png").read_bytes()) == \
            (out / f"{cid}.txt").read_text().strip()
    (out / f"{index[5][1]}.png").unlink()
    code, stdout, _ = run(*args)
    assert code == 0 and stdout.startswith("0 ") and (out / f"{index[5][1]}.png").exists()


@pytest.mark.parametrize(("mangle", "expected"), [
    (lambda lines: [lines[0], lines[1] + ',"' + "x" * 200_000 + '"'], "line 2"),  # huge cell
    (lambda lines: [lines[0] + ",given_name", *lines[1:]], "repeated CSV columns: given_name"),
    (lambda lines: [lines[0], lines[1] + ",surplus", *lines[2:]], "line 2:"),
])
def test_odd_csv_files_are_named_errors(homes: dict[str, Path], passphrase: str, run: Run,
                                        tmp_path: Path, mangle: Any, expected: str) -> None:
    init_office(run, homes["issuer"])
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    (tmp_path / "odd.csv").write_text("\n".join(mangle(lines)) + "\n", encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(tmp_path / "odd.csv"), "--out-dir",
                       str(tmp_path / "o"), "--home", str(homes["issuer"]))
    assert code == 2 and expected in err and "Traceback" not in err
    assert len(_issued(homes["issuer"])) == 0


@pytest.mark.parametrize("folders", ["one folder", "two folders"])
def test_the_same_file_run_twice_at_once_issues_each_row_once(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path, folders: str) -> None:
    """An operator who starts the same batch twice: the rows are shared out or refused, never
    doubled; into one folder, running the file once more completes it."""
    home, rows = homes["issuer"], 30
    init_office(run, home)
    residents = _many(tmp_path, rows)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    outs = [tmp_path / "out", tmp_path / ("out" if folders == "one folder" else "other")]
    procs = [subprocess.Popen([sys.executable, "-m", "pasaporte", "issuer", "bulk",
                               str(residents), "--out-dir", str(out), "--home", str(home)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for out in outs]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        assert proc.returncode == 0 or any(code in err for code in (
            "bulk_folder_busy", "bulk_row_taken", "bulk_files_lost")), err
    files = {p.stem for out in set(outs) for p in out.glob("*.txt")}
    assert len(_issued(home)) <= rows and files == set(_issued(home))
    # no row twice: each credential is the one its row's fingerprint names (a row issued by
    # both runs would leave two credentials under one fingerprint, one of them unnamed)
    with IssuerStore.open(home).engine.connect() as db:
        named = [r[0] for r in db.execute(sa.select(bulk_fingerprints.c.credential_id))]
    assert sorted(named) == sorted(_issued(home))
    if folders == "one folder":
        assert run("issuer", "bulk", str(residents), "--out-dir", str(outs[0]),
                   "--home", str(home))[0] == 0
        index = _index(outs[0])
        assert len(index) == rows and sorted(cid for _, cid in index) == sorted(_issued(home))


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


ROWS = 400


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_killed_qr_run_leaves_no_worker_behind(homes: dict[str, Path], passphrase: str,
                                                 run: Run, tmp_path: Path, how: int) -> None:
    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    # enough rows that the run is still drawing when the signal comes, on a loaded machine
    said = (tmp_path / "stderr.txt").open("w+", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "pasaporte", "issuer", "bulk",
                             str(_many(tmp_path, ROWS)), "--out-dir", str(out), "--qr",
                             "--home", str(home)], env=env, stdout=subprocess.DEVNULL,
                            stderr=said)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.png")):  # the drawing phase has begun
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert workers
    proc.send_signal(how)  # to the run alone, as a supervisor or kill does, not its group
    proc.wait(timeout=60)
    if how in (signal.SIGINT, signal.SIGHUP):  # cancelled, as by Ctrl-C (SIGHUP: the terminal
        # window closed; it used to kill the run, leaving signed passports no one recorded)
        assert proc.returncode == 130
        assert {p.suffix for p in out.iterdir()} <= {".txt", ".png", ".csv", ".lock"}, sorted(
            p.name for p in out.iterdir())
        if how == signal.SIGINT:  # how many were issued, and that the same command resumes
            said.seek(0)
            err = said.read()
            done = len(list(out.glob("*.txt")))
            assert done and f"[bulk_cancelled_partway] Antes de cancelar se emitieron " \
                f"{done} pasaportes" in err, err
            assert "[cancelled]" in err
    said.close()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [pid for pid in workers if Path(f"/proc/{pid}/stat").exists()
             and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert alive == []
    assert run("issuer", "bulk", str(tmp_path / f"residents-{ROWS}.csv"), "--out-dir",
               str(out), "--qr", "--home", str(home))[0] == 0  # and the run resumes to the end
    assert len(list(out.glob("*.png"))) == ROWS


def test_an_edited_file_resumes_by_resident_not_by_bytes(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """A spreadsheet saves the file again (CRLF), the rows are re-sorted, a typo is fixed in a
    row not issued yet: the residents already issued are not issued again."""
    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    first = _many(tmp_path, 6)
    header, *rows = first.read_text(encoding="utf-8").splitlines()
    (tmp_path / "part.csv").write_text("\n".join([header, *rows[:4]]) + "\n", encoding="utf-8")
    assert run("issuer", "bulk", str(tmp_path / "part.csv"), "--out-dir", str(out),
               "--home", str(home))[0] == 0  # as if cut short after four rows
    edited = [*reversed(rows[:4]), rows[4].replace("Ana Sofía", "Ana Sofia"), rows[5]]
    (tmp_path / "edited.csv").write_bytes(("\r\n".join([header, *edited]) + "\r\n").encode())
    code, stdout, err = run("issuer", "bulk", str(tmp_path / "edited.csv"), "--out-dir",
                            str(out), "--home", str(home))
    assert code == 0 and stdout.startswith("2 ") and "4 ya emitidos" in err
    assert len(_issued(home)) == 6 and len(_index(out)) == 6


def test_a_row_corrected_after_it_was_issued_is_said(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """A typo fixed in a row already issued: the corrected row is a new passport (its claims
    changed), and the clerk is told that the earlier one, still valid, wants revoking."""
    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    first = _many(tmp_path, 3)
    assert run("issuer", "bulk", str(first), "--out-dir", str(out), "--home", str(home))[0] == 0
    old = dict(_index(out))
    header, *rows = first.read_text(encoding="utf-8").splitlines()
    rows[1] = rows[1].replace("García", "Garcia")  # line 3
    (tmp_path / "fixed.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    code, stdout, err = run("issuer", "bulk", str(tmp_path / "fixed.csv"), "--out-dir",
                            str(out), "--home", str(home))
    assert code == 0 and stdout.startswith("1 ")
    assert "[bulk_rows_left_out]" in err and old["3"] in err and "revoke" in err
    assert "revóquelos" in err and list(out.glob("index-*.csv"))
    # out of what is printed: named once by this notice, and by no index after it, the old
    # passport went out with the folder beside its corrected one
    assert not (out / f"{old['3']}.txt").exists()
    assert (out / "not_in_this_file" / f"{old['3']}.txt").exists()
    assert str(out / "not_in_this_file") in err
    code, stdout, err = run("issuer", "bulk", str(tmp_path / "fixed.csv"), "--out-dir",
                            str(out), "--home", str(home))
    assert code == 0 and "[bulk_rows_left_out]" not in err, err
    assert {p.stem for p in out.glob("*.txt")} == set(dict(_index(out)).values())


def _issued_then_revoked(run: Run, home: Path, out: Path, tmp_path: Path, line: str,
                         reason: str) -> tuple[Path, str]:
    """Three rows issued into ``out``; the passport of ``line`` revoked for ``reason``."""
    init_office(run, home)
    first = _many(tmp_path, 3)
    assert run("issuer", "bulk", str(first), "--out-dir", str(out), "--home", str(home))[0] == 0
    old = dict(_index(out))[line]
    assert run("issuer", "revoke", old, "--reason", reason, "--home", str(home))[0] == 0
    return first, old


def test_a_row_corrected_after_its_passport_was_revoked_is_not_said(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """The documented correction: revoke (data_error), fix the row, run again. The notice
    told the clerk the revoked passport was "still valid: revoke them"; its file stayed in
    the print folder beside its replacement."""
    home, out = homes["issuer"], tmp_path / "out"
    first, old = _issued_then_revoked(run, home, out, tmp_path, "3", "data_error")
    header, *rows = first.read_text(encoding="utf-8").splitlines()
    rows[1] = rows[1].replace("García", "Garcia")  # line 3
    (tmp_path / "fixed.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    code, stdout, err = run("issuer", "bulk", str(tmp_path / "fixed.csv"), "--out-dir",
                            str(out), "--home", str(home))
    assert code == 0 and stdout.startswith("1 ") and "[bulk_rows_left_out]" not in err, err
    assert not (out / f"{old}.txt").exists() and (out / "revoked" / f"{old}.txt").exists()


def test_the_folder_revoked_passports_are_set_aside_in_is_owner_only(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """It followed the umask (0777 under umask 000): any local user could list, rename or
    delete the paper passports of revoked residents."""
    home, out = homes["issuer"], tmp_path / "out"
    first, old = _issued_then_revoked(run, home, out, tmp_path, "2", "extraviado")
    previous = os.umask(0)
    try:
        code, _, err = run("issuer", "bulk", str(first), "--out-dir", str(out),
                           "--home", str(home))
    finally:
        os.umask(previous)
    assert code == 0, err
    assert (out / "revoked" / f"{old}.txt").exists()
    assert (out / "revoked").stat().st_mode & 0o777 == 0o700


def test_a_row_whose_passport_was_revoked_is_issued_anew_though_its_file_is_there(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """Lost, revoked, the sheet run again to reprint: the revoked passport counted as
    "already issued", went into the index and got a freshly drawn card every counter
    refuses, and its row was never issued again."""
    home, out = homes["issuer"], tmp_path / "out"
    first, old = _issued_then_revoked(run, home, out, tmp_path, "2", "extraviado")
    code, stdout, err = run("issuer", "bulk", str(first), "--out-dir", str(out), "--qr",
                            "--home", str(home))
    assert code == 0 and stdout.startswith("1 ") and "2 ya emitidos" in err, err
    new = dict(_index(out))["2"]
    assert new != old and (out / f"{new}.txt").exists() and (out / f"{new}.png").exists()
    assert not (out / f"{old}.txt").exists() and not (out / f"{old}.png").exists()
    assert (out / "revoked" / f"{old}.txt").exists()
    assert IssuerStore.open(home).credential(new)["status"] == "valid"  # type: ignore[index]
    # ``issuer status --json`` said false of a revoked one: counters refuse it once they hold
    # a bundle made since
    assert IssuerStore.open(home).credential(old)["refused_by_counters"] is True  # type: ignore[index]


def test_rows_signed_by_a_key_compromised_by_then_are_issued_anew(
        issued_sample: tuple[Path, Path, tuple[str, ...]], run: Run) -> None:
    """After a compromise and a rotation, the sheet run again to reprint: its passports,
    signed after the compromise time, are refused by every counter; counted "already issued"
    (exit 0), a city would mail them all. Each row is issued anew by the new key, and the dead
    files leave the print folder."""
    home, out, args = issued_sample
    first = dict(_index(out))
    kid = json.loads(run("issuer", "keys", "--json", "--home", str(home))[1])[0]["kid"]
    # before the key existed: recorded as its first moment, so everything it signed
    assert run("issuer", "compromised", kid, "--since", "2000-01-01T00:00:00Z",
               "--home", str(home))[0] == 0
    assert run("issuer", "rotate", "--home", str(home))[0] == 0
    code, stdout, err = run(*args)
    assert code == 0 and stdout.startswith("3 ") and "ya emitidos" not in err, err
    # the passports re-issued are not "left out, still valid: revoke them" (a data_error
    # revocation of each on the public record, for nothing)
    assert "[bulk_rows_left_out]" not in err, err
    again = dict(_index(out))
    assert set(again) == set(first) and not set(again.values()) & set(first.values())
    store = IssuerStore.open(home)
    for line, old in first.items():
        assert not (out / f"{old}.txt").exists()
        assert (out / "key_compromised" / f"{old}.txt").exists()
        new = store.credential(again[line])
        assert new is not None and new["kid"] != kid
        assert new["refused_by_counters"] is False
    code, stdout, err = run(*args)  # and then it is done: nothing issued a third time
    assert code == 0 and stdout.startswith("0 ") and "3 ya emitidos" in err, err


def test_the_same_resident_twice_in_a_file_issues_nothing(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    home = homes["issuer"]
    init_office(run, home)
    header, *rows = SAMPLE.read_text(encoding="utf-8").splitlines()
    (tmp_path / "twice.csv").write_text("\n".join([header, *rows, rows[1]]) + "\n",
                                        encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(tmp_path / "twice.csv"), "--out-dir",
                       str(tmp_path / "out"), "--home", str(home))
    assert code == 2 and "línea/line 5: [bulk_row_repeated]" in err, err
    assert "line 5 repeats" in err.lower() and "1 invalid row(s)" in err
    assert _issued(home) == []
    # the same person written otherwise (capitals, spaces, another fare): still one person
    cells = rows[1].split(",")
    cells[0], cells[1] = f"  {cells[0].upper()} ", cells[1].lower().replace(" ", "  ")
    cells[header.split(",").index("fare_category")] = "standard"
    (tmp_path / "twice.csv").write_text("\n".join([header, *rows, ",".join(cells)]) + "\n",
                                        encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(tmp_path / "twice.csv"), "--out-dir",
                       str(tmp_path / "out"), "--home", str(home))
    assert code == 2 and "[bulk_resident_repeated]" in err and "Line 5 is the same person as " \
        "line 3" in err, err
    assert _issued(home) == []
    # and with the punctuation a sheet varies: autocorrect's apostrophe, a hyphen for a space
    for given, family in (("D'Angelo", "Ruiz"), ("Jean-Luc", "García-")):
        other = (given.replace("'", "’").replace("-", " "), family.rstrip("-") + " ")
        lines = [header]
        for n, (g, f) in enumerate(((given, family), other)):
            cells = rows[n].split(",")
            cells[0], cells[1] = g, f
            cells[2] = "1980-01-02"  # one birth date: one person
            lines.append(",".join(cells))
        (tmp_path / "twice.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        code, _, err = run("issuer", "bulk", str(tmp_path / "twice.csv"), "--out-dir",
                           str(tmp_path / "out"), "--home", str(home))
        assert code == 2 and "[bulk_resident_repeated]" in err, (given, err)
    assert _issued(home) == []


def test_a_row_refused_for_two_reasons_is_counted_once(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """Expired and adding a name too short to a catalogue: a one-row sheet was "2 invalid
    row(s)", a count the clerk could not find in the sheet."""
    home = homes["issuer"]
    init_office(run, home)
    header = SAMPLE.read_text(encoding="utf-8").splitlines()[0]
    row = ("Pedro,Ruiz,1980-01-01,Mexicali,MX,2010-03-04,true,BP,standard,false,,es,"
           "2020-01-01,2021-01-01")
    (tmp_path / "one.csv").write_text(f"{header}\n{row}\n", encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(tmp_path / "one.csv"), "--out-dir",
                       str(tmp_path / "out"), "--home", str(home))
    assert code == 2 and "[claims_expired]" in err and "[catalog_name_short]" in err, err
    assert "1 invalid row(s)" in err and _issued(home) == []


def test_every_repeated_resident_is_named_at_once_before_the_passphrase(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeats were found only after the passphrase, one pair a run (three pairs: three runs),
    and a wrong passphrase hid them all."""
    home = homes["issuer"]
    init_office(run, home)
    header, *rows = SAMPLE.read_text(encoding="utf-8").splitlines()
    (tmp_path / "pairs.csv").write_text("\n".join([header, *rows, *rows]) + "\n",
                                        encoding="utf-8")
    monkeypatch.setattr("issuer.cli.read_passphrase", lambda **_: pytest.fail("asked"))
    code, _, err = run("issuer", "bulk", str(tmp_path / "pairs.csv"), "--out-dir",
                       str(tmp_path / "out"), "--home", str(home))
    named = [line.split(":")[0] for line in err.splitlines() if "[bulk_row_repeated]" in line]
    assert code == 2 and len(named) == len(rows), err
    assert f"{len(rows)} invalid row(s)" in err and _issued(home) == []


def test_rows_are_named_by_the_line_they_start_on(homes: dict[str, Path], passphrase: str,
                                                  run: Run, tmp_path: Path) -> None:
    """A blank line and a cell spanning two lines (a spreadsheet's note) shift every row after
    them: errors and ``index.csv`` name the line an office sees in a text editor."""
    home = homes["issuer"]
    init_office(run, home)
    header, first, second, third = SAMPLE.read_text(encoding="utf-8").splitlines()
    multi = first.replace("Mexicali", '"Mexi\ncali"', 1)  # lines 2-3: one row (a bad city)
    assert multi != first
    text = "\n".join([header, multi, "", second, third.replace("student", "vip")]) + "\n"
    (tmp_path / "odd.csv").write_text(text, encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(tmp_path / "odd.csv"), "--out-dir",
                       str(tmp_path / "o"), "--home", str(home))
    assert code == 2 and "line 6" in err and "fare_category" in err, err
    assert "line 2" in err and "residence.city" in err
    assert "line 3" not in err and "line 4" not in err and "line 5" not in err
    (tmp_path / "ok.csv").write_text("\n".join([header, first, "", second, "", "", third])
                                     + "\n", encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(tmp_path / "ok.csv"), "--out-dir",
                       str(tmp_path / "o"), "--home", str(home))
    assert code == 0, err
    assert [line for line, _ in _index(tmp_path / "o")] == ["2", "4", "7"]


def test_another_files_index_in_the_folder_is_kept(homes: dict[str, Path], passphrase: str,
                                                   run: Run, tmp_path: Path) -> None:
    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    assert run("issuer", "bulk", str(SAMPLE), "--out-dir", str(out), "--home", str(home))[0] == 0
    first = _index(out)
    assert run("issuer", "bulk", str(_many(tmp_path, 4)), "--out-dir", str(out),
               "--home", str(home))[0] == 0
    kept = list(out.glob("index-*.csv"))
    assert len(kept) == 1 and len(_index(out)) == 4
    assert kept[0].read_text() != (out / "index.csv").read_text()
    assert all(cid in kept[0].read_text() for _, cid in first)


def test_rows_are_checked_with_progress(tmp_path: Path) -> None:
    """Checking a file of many thousands of rows takes seconds before anything is issued: the
    progress counts every record, a row split over lines once, a blank line not at all."""
    from contextlib import contextmanager

    from issuer.bulk import parse_residents

    shown: list[tuple[int, str, int]] = []

    @contextmanager
    def progress(items: Any, length: int, label: str) -> Any:
        seen = list(items)
        yield seen
        shown.append((length, label, len(seen)))

    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    quoted = lines[1].replace("Ana Sofía", '"Ana\nSofía"')
    data = "\n".join([lines[0], quoted, "", *lines[2:], lines[2].replace("-07-", "-13-")])
    rows, errors = parse_residents(data.encode(), progress=progress)
    assert [r.line for r in rows] == [5, 6] and [e.line for e in errors] == [2, 7]
    assert shown == [(4, "Comprobando filas / Checking rows", 4)]


def test_bulk_says_what_it_does_before_issuing(homes: dict[str, Path], passphrase: str,
                                               run: Run, tmp_path: Path) -> None:
    home = homes["issuer"]
    init_office(run, home)
    code, _, err = run("issuer", "bulk", str(SAMPLE), "--out-dir", str(tmp_path / "out"),
                       "--home", str(home))
    assert code == 0, err
    phases = ["Comprobando filas / Checking rows",
              "Buscando filas ya emitidas / Looking for rows issued before",
              "Emitiendo / Issuing"]
    assert [err.index(p) for p in phases] == sorted(err.index(p) for p in phases)


def test_a_run_refused_before_it_wrote_anything_leaves_no_folder(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    home = homes["issuer"]
    init_office(run, home)
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "no es la frase")
    code, _, err = run("issuer", "bulk", str(SAMPLE), "--out-dir", str(tmp_path / "new"),
                       "--home", str(home))
    assert code == 1 and "passphrase_wrong" in err, err
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()  # a folder that was there stays, as it was
    code, _, _ = run("issuer", "bulk", str(SAMPLE), "--out-dir", str(tmp_path / "kept"),
                     "--home", str(home))
    assert code == 1 and (tmp_path / "kept").is_dir()


@pytest.mark.parametrize("full", ["store", "folder"])
def test_a_run_stopped_by_a_full_disk_says_what_it_issued_and_that_it_resumes(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, full: str) -> None:
    """The store's (or the folder's) "nothing was saved" is true of the last group only: the
    run names how many it issued and kept, and that the same command goes on; run again, it
    does."""
    import errno

    from credential.errors import StoreError
    from issuer import bulk

    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    residents = _many(tmp_path, 10)  # groups of 1, 2, 4, …: the fourth group fails
    issue_many, write, calls = IssuerStore.issue_many, bulk._write_partial, []

    def full_store(self: IssuerStore, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 4:
            raise StoreError("store_full", what="issuer.db")
        return issue_many(self, *args, **kwargs)

    def full_folder(folder: Path, cred: Any) -> None:
        calls.append(1)
        if len(calls) == 8:  # the first passport of the fourth group
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "x.partial"))
        write(folder, cred)

    if full == "store":
        monkeypatch.setattr(IssuerStore, "issue_many", full_store)
    else:
        monkeypatch.setattr(bulk, "_write_partial", full_folder)
    code, _, err = run("issuer", "bulk", str(residents), "--out-dir", str(out),
                       "--home", str(home))
    cause = "[store_full]" if full == "store" else "[file_error]"
    assert code == 1 and "[bulk_stopped]" in err and cause in err, err
    assert "after issuing 7 passports" in err and "do not delete the folder" in err
    assert "después de emitir 7 pasaportes" in err and "no borre la carpeta" in err
    assert len(_issued(home)) == 7
    monkeypatch.setattr(IssuerStore, "issue_many", issue_many)
    monkeypatch.setattr(bulk, "_write_partial", write)
    code, _, err = run("issuer", "bulk", str(residents), "--out-dir", str(out),
                       "--home", str(home))
    assert code == 0 and "7 ya emitidos antes" in err, err
    assert len(_issued(home)) == 10


def test_drawing_workers_start_with_ctrl_c_held_back_and_then_ignore_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group: pressed while a worker's interpreter
    was still starting (before it ignores SIGINT) it printed that worker's traceback. The pool
    is made with Ctrl-C, SIGHUP and SIGTERM held back (a mask outlives the exec), and each
    worker lets them through only once it has set what they do."""
    from issuer import bulk

    seen: list[set[int]] = []

    class Context:
        def Pool(self, *args: Any, **kwargs: Any) -> Any:
            seen.append(set(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
            raise RuntimeError("no pool needed")

    monkeypatch.setattr("issuer.bulk.multiprocessing.get_context", lambda kind: Context())
    paths = [tmp_path / f"{i}.png" for i in range(bulk._POOL_FROM)]
    with pytest.raises(RuntimeError):
        bulk._draw_missing(tmp_path, [p.stem for p in paths], bulk._quiet, workers=2,
                           qr_codes=True, cards=None)
    assert seen and {signal.SIGINT, signal.SIGHUP, signal.SIGTERM} <= seen[0]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # let go after
    worker = subprocess.run(
        [sys.executable, "-c",
         "import os, signal\n"
         "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})\n"
         "from issuer import bulk\n"
         "bulk._start_worker(os.getppid())\n"
         "print(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),\n"
         "      signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"],
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
        capture_output=True, text=True, timeout=60)
    assert worker.stdout.strip() == "[] True", worker.stderr


def test_a_run_killed_while_drawing_leaves_no_traceback(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """SIGKILL to the run while its workers draw QR images: a worker that found the run gone
    mid-answer wrote a BrokenPipeError traceback on the clerk's terminal. The kernel now ends
    the workers with the run."""
    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    header, *body = SAMPLE.read_text(encoding="utf-8").splitlines()
    rows = [header]
    for i in range(150):
        cells = body[i % len(body)].split(",")
        cells[2] = f"19{40 + i % 40}-{1 + i // 40:02}-{1 + i % 28:02}"  # each resident apart
        rows.append(",".join(cells))
    (tmp_path / "many.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    log = tmp_path / "run.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pasaporte", "issuer", "bulk", str(tmp_path / "many.csv"),
             "--out-dir", str(out), "--qr", "--home", str(home)],
            stdout=sink, stderr=sink, env=dict(os.environ, PYTHONPATH=str(REPO)))
        try:
            deadline = time.monotonic() + 120
            while not list(out.glob("*.png")) and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            time.sleep(3)  # the workers' last words, if any, come after the run is gone
        finally:
            proc.kill()
    said = log.read_text()
    assert "Traceback" not in said and "BrokenPipeError" not in said, said
