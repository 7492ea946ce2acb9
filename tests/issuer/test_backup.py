"""``issuer backup`` / ``issuer restore``: a consistent copy taken while the office works, and
an office made again from it that has no live credential it could not revoke."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from credential.errors import StoreError
from issuer import backup
from tests.conftest import Run
from tests.factory import EXAMPLES, day, example_claims
from tests.issuer.conftest import init_office, issue_paper

REPO = Path(__file__).resolve().parents[2]




def _verify(run: Run, home: Path, tmp_path: Path, credential: Path) -> str:
    run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(home))
    (tmp_path / "b.cbor").unlink(missing_ok=True)
    assert run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(home))[0] == 0
    _, out, _ = run("verify", "--service", "library", "--bundle", str(tmp_path / "b.cbor"),
                    "--trust-root", str(tmp_path / "r.json"), "--text",
                    credential.read_text().strip(), "--json")
    code: str = json.loads(out)["code"]
    return code


def test_restore_keeps_what_was_backed_up_and_refuses_what_came_after(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    office, restored, copy = homes["issuer"], tmp_path / "restored", tmp_path / "office.bak"
    init_office(run, office)
    before = issue_paper(run, office, tmp_path / "before.txt")  # the same second as the backup
    code, out, _ = run("issuer", "backup", "--out", str(copy), "--home", str(office))
    assert code == 0 and "1 pasaportes" in out and copy.is_file()
    after = issue_paper(run, office, tmp_path / "after.txt")  # at once: lost with the office
    code, _, err = run("issuer", "backup", "--out", str(copy), "--home", str(office))
    assert code == 2 and "backup_exists" in err  # never over another file (as --out elsewhere)

    code, out, err = run("issuer", "restore", "--from", str(copy), "--home", str(restored))
    assert code == 0 and "1 pasaportes" in out and "compromised" in err, err
    assert "status changes made after the backup" in err
    code, _, err = run("issuer", "restore", "--from", str(copy), "--home", str(restored))
    assert code == 1 and "issuer_exists" in err
    assert "Copiando" not in err  # refused before any work is announced
    status = json.loads(run("issuer", "status", before, "--json", "--home", str(restored))[1])
    assert status["status"] == "valid"
    code, _, err = run("issuer", "status", after, "--home", str(restored))
    assert code == 1 and "[credential_unknown]" in err and after in err  # unknown there
    keys = json.loads(run("issuer", "keys", "--json", "--home", str(restored))[1])
    assert sorted(k["status"] for k in keys) == ["active", "compromised"]

    assert _verify(run, restored, tmp_path, tmp_path / "before.txt") == "accepted"
    assert _verify(run, restored, tmp_path, tmp_path / "after.txt") == "key_compromised"
    issue_paper(run, restored, tmp_path / "new.txt")  # the office goes on, with its new key
    assert _verify(run, restored, tmp_path, tmp_path / "new.txt") == "accepted"


def test_a_backup_taken_during_a_bulk_run_is_whole(homes: dict[str, Path], passphrase: str,
                                                   run: Run, tmp_path: Path) -> None:
    office = homes["issuer"]
    init_office(run, office)
    header, *rows = (EXAMPLES / "residents-sample.csv").read_text(encoding="utf-8").splitlines()
    start = example_claims()["valid_from"]
    many = [",".join([*cells[:2], f"19{40 + i}-01-{1 + n:02}", *cells[3:]])  # born apart
            for n, row in enumerate(rows) for i in range(40)
            for cells in [row.replace(f",{start},",
                                      f",{day(f'2026-{1 + i // 28:02}-{1 + i % 28:02}')},")
                          .split(",")]]  # 120 residents: each row its own first day
    (tmp_path / "many.csv").write_text("\n".join([header, *many]) + "\n", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pasaporte", "issuer", "bulk", str(tmp_path / "many.csv"),
         "--out-dir", str(tmp_path / "out"), "--home", str(office)],
        env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        while len(list((tmp_path / "out").glob("*.txt"))) < 10:
            assert proc.poll() is None, "the bulk run ended before ten rows"
            time.sleep(0.01)
        code, out, err = run("issuer", "backup", "--out", str(tmp_path / "mid.bak"),
                             "--home", str(office))
        assert code == 0, err
    finally:
        _, bulk_err = proc.communicate(timeout=120)
    assert proc.returncode == 0, bulk_err
    count = int(out.split("(")[1].split()[0])
    assert 10 <= count <= 120  # a snapshot from the middle of the run, checked whole
    restored = backup.restore(tmp_path / "mid.bak", tmp_path / "restored", passphrase)
    assert restored.count == count and restored.ledger is None  # no ledger named


def test_a_damaged_or_foreign_backup_is_not_used(homes: dict[str, Path], passphrase: str,
                                                 run: Run, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    office = homes["issuer"]
    init_office(run, office)
    assert run("issuer", "backup", "--out", str(tmp_path / "ok.bak"), "--home", str(office))[0] == 0
    data = (tmp_path / "ok.bak").read_bytes()
    (tmp_path / "torn.bak").write_bytes(data[: len(data) // 2])
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "torn.bak"),
                       "--home", str(tmp_path / "a"))
    assert code == 1 and "backup_unreadable" in err and not (tmp_path / "a" / "issuer.db").exists()
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "another office's passphrase")
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "ok.bak"),
                       "--home", str(tmp_path / "b"))
    assert code == 1 and "[backup_passphrase_wrong]" in err
    assert not (tmp_path / "b" / "issuer.db").exists()


def test_a_restore_cut_short_leaves_no_office_and_runs_again(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    office, restored = homes["issuer"], tmp_path / "restored"
    init_office(run, office)
    assert run("issuer", "backup", "--out", str(tmp_path / "b.bak"), "--home", str(office))[0] == 0

    def cut(*_args: object) -> str:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(backup, "_retire", cut)
        assert run("issuer", "restore", "--from", str(tmp_path / "b.bak"),
                   "--home", str(restored))[0] == 130  # cancelled
    assert not (restored / "issuer.db").exists()  # no office whose old key still signs
    assert run("issuer", "restore", "--from", str(tmp_path / "b.bak"),
               "--home", str(restored))[0] == 0
    keys = json.loads(run("issuer", "keys", "--json", "--home", str(restored))[1])
    assert sorted(k["status"] for k in keys) == ["active", "compromised"]
    assert not (restored / ".restoring").exists()  # nothing of the first attempt is left


_CHANGES = {
    "a flipped status": "UPDATE credentials SET status = 'revoked'",
    # a trigger that quietly undoes every revocation made after the restore
    "a trigger": "CREATE TRIGGER keep_valid AFTER UPDATE OF status ON credentials "
                 "BEGIN UPDATE credentials SET status = 'valid' WHERE id = NEW.id; END",
    "an index": "CREATE INDEX extra ON credentials (status)",
    # damage to the sealed root key must not read as a wrong passphrase (nor as a store error):
    # the operator would go on trying passphrases on a broken copy
    "a damaged root key": "UPDATE keys SET sealed = zeroblob(length(sealed)) WHERE role = 'root'",
    # its last byte another one (random, it is already 0x00 one time in 256)
    "a changed byte in the root key": "UPDATE keys SET sealed = CAST(substr(sealed, 1, "
                                      "length(sealed) - 1) || CASE WHEN substr(sealed, -1) = "
                                      "X'00' THEN X'01' ELSE X'00' END AS BLOB) "
                                      "WHERE role = 'root'",
    "a damaged signature": "UPDATE meta SET v = '!' || v WHERE k = 'backup_signature'",
}


@pytest.mark.parametrize("change", sorted(_CHANGES))
def test_a_changed_backup_is_not_used(homes: dict[str, Path], passphrase: str, run: Run,
                                      tmp_path: Path, change: str) -> None:
    """The root key signs the schema as well as the rows: neither may change in the copy."""
    office = homes["issuer"]
    init_office(run, office)
    issue_paper(run, office, tmp_path / "c.txt")
    assert run("issuer", "backup", "--out", str(tmp_path / "b.bak"), "--home", str(office))[0] == 0
    with sqlite3.connect(tmp_path / "b.bak") as db:
        db.execute(_CHANGES[change])
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "b.bak"),
                       "--home", str(tmp_path / "r"))
    assert code == 1 and "backup_unreadable" in err and "contents changed" in err
    assert not (tmp_path / "r").exists()


def test_restore_keeps_the_permissions_of_a_folder_it_did_not_make(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    office = homes["issuer"]
    init_office(run, office)
    assert run("issuer", "backup", "--out", str(tmp_path / "b.bak"), "--home", str(office))[0] == 0
    given = tmp_path / "given"
    given.mkdir()
    os.chmod(given, 0o750)  # the operator's choice (a group that reads the office's logs)
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "b.bak"),
                       "--home", str(given), "--no-ledger")
    assert code == 0 and "[issuer_restore_status_unread]" in err, err
    assert given.stat().st_mode & 0o777 == 0o750
    made = tmp_path / "made" / "office"
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "b.bak"),
                       "--home", str(made), "--no-ledger")
    assert code == 0, err
    assert made.stat().st_mode & 0o777 == 0o700  # a folder it makes holds sealed keys: 0700


def test_a_backup_whose_schema_text_is_damaged_is_refused_by_name(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in a table's SQL text (a bad sector) reach Python as a decoding
    error, not SQLite's: still a damaged backup, not an unexpected failure."""
    office = homes["issuer"]
    init_office(run, office)
    assert run("issuer", "backup", "--out", str(tmp_path / "b.bak"), "--home", str(office))[0] == 0
    data = bytearray((tmp_path / "b.bak").read_bytes())
    at = data.index(b"CREATE TABLE keys")
    data[at + len("CREATE ")] = 0xCC  # a lead byte without its continuation
    (tmp_path / "torn.bak").write_bytes(bytes(data))
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "torn.bak"),
                       "--home", str(tmp_path / "r"), "--no-ledger")
    assert code == 1 and "backup_unreadable" in err and "no es texto UTF-8" in err, err
    assert not (tmp_path / "r").exists()


def test_a_backup_named_on_a_latin1_terminal_is_written_under_that_name(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """A name typed on a Latin-1 terminal holds a byte that is no UTF-8: cutting it for the
    partial file's name raised an internal error, after the passphrase was typed. (Its own
    process: the terminal's output, not pytest's capture, has to show that name.)"""
    init_office(run, homes["issuer"])
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / os.fsdecode(b"copia-pe\xf1a.bak")
    done = subprocess.run([sys.executable, "-m", "pasaporte", "issuer", "backup", "--out",
                           os.fsencode(target), "--home", str(homes["issuer"])],
                          capture_output=True, cwd=REPO, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert os.listdir(os.fsencode(tmp_path / "out")) == [b"copia-pe\xf1a.bak"]
    code, _, err = run("issuer", "restore", "--from", str(target), "--home",
                       str(tmp_path / "r"), "--no-ledger")
    assert code == 0, err


def test_a_missing_backup_is_a_usage_error(homes: dict[str, Path], passphrase: str, run: Run,
                                           tmp_path: Path) -> None:
    """A mistyped --from exits 2 like any other missing input, and does not call the path a
    damaged backup; nothing is made."""
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "typo.bak"),
                       "--home", str(tmp_path / "r"), "--no-ledger")
    assert code == 2 and "[backup_not_found]" in err and "not an intact copy" not in err
    assert not (tmp_path / "r").exists()


def test_what_a_damaged_backup_quotes_reaches_the_terminal_printable(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """SQLite's error quotes the bytes it could not read: a crafted backup's escape sequence
    (here, one that retitles the terminal window; click strips colours only, and only when
    not on a terminal) is in the message as plain text."""
    office = homes["issuer"]
    init_office(run, office)
    assert run("issuer", "backup", "--out", str(tmp_path / "b.bak"), "--home", str(office))[0] == 0
    with sqlite3.connect(tmp_path / "b.bak") as db:  # ESC ] 0 ; pwned BEL, then a bad byte
        db.execute("UPDATE meta SET v = CAST(X'1b5d303b70776e656407ff' AS TEXT) "
                   "WHERE k = 'city'")
    with pytest.raises(StoreError) as raised:
        backup.restore(tmp_path / "b.bak", tmp_path / "r", passphrase, ledger=False)
    assert raised.value.code == "backup_unreadable"
    for text in raised.value.message.values():
        assert "pwned" in text and all(c.isprintable() for c in text), text
    assert not (tmp_path / "r").exists()
