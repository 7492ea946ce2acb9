"""``issuer passphrase``: every secret the office store seals (the root key, every office key,
retired and compromised ones too, the ledger token) sealed anew under the new passphrase in one
transaction; the old one opens nothing afterwards, the new one does everything; a refusal or a
crash at any point leaves the home wholly under one passphrase; backups made before keep the
passphrase they were made under."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from credential.errors import StoreError
from credential.keys import b64url, seal, unb64url, unseal
from credential.times import rfc3339
from issuer import reseal
from issuer.store import IssuerStore
from tests.conftest import PASSPHRASE, Run
from tests.factory import EXAMPLES
from tests.issuer.test_backup import _verify

REPO = Path(__file__).resolve().parents[2]
OLD = PASSPHRASE
NEW = "nueva frase de prueba / new test passphrase"
LEDGER = "http://127.0.0.1:9"  # nothing listens there: the token is saved unchecked, and kept



def _change(run: Run, home: Path, monkeypatch: pytest.MonkeyPatch, *,
            current: str | None = None, new: str | None = None,
            stdin: str | None = None) -> tuple[int, str, str]:
    """``issuer passphrase`` in-process: passphrases from the environment (``current``,
    ``new``), or, for those not given, from ``stdin`` as a pipe would give them."""
    for variable, value in (("PASAPORTE_PASSPHRASE", current),
                            ("PASAPORTE_NEW_PASSPHRASE", new)):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
    result = run("issuer", "passphrase", "--home", str(home))
    monkeypatch.delenv("PASAPORTE_NEW_PASSPHRASE", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return result


def _issue(run: Run, home: Path, out: Path) -> tuple[int, str, str]:
    return run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"), "--paper",
               "--out", str(out), "--home", str(home))


def _sealed(home: Path) -> dict[tuple[str, bytes], bytes]:
    """Every sealed secret of the home, read from the database file directly."""
    with contextlib.closing(sqlite3.connect(home / "issuer.db")) as db:
        found = {("key", bytes(kid)): bytes(blob)
                 for kid, blob in db.execute("SELECT kid, sealed FROM keys")}
        token = db.execute("SELECT v FROM meta WHERE k = 'ledger_token'").fetchone()
    if token is not None:
        found["ledger_token", b""] = unb64url(token[0])
    return found


def _opens(blob: bytes, passphrase: str) -> bool:
    try:
        unseal(blob, passphrase)
    except StoreError as exc:
        assert exc.code == "passphrase_wrong"
        return False
    return True


def _passphrase_of(home: Path, *candidates: str) -> str:
    """The one passphrase among ``candidates`` that opens every secret of the home; fails if
    any secret opens with none or with several, or two secrets with different ones."""
    blobs = list(_sealed(home).values())
    assert blobs
    with ThreadPoolExecutor(max_workers=4) as pool:  # Argon2id runs outside the GIL
        opening = list(pool.map(
            lambda blob: frozenset(i for i, p in enumerate(candidates) if _opens(blob, p)),
            blobs))
    assert all(len(found) == 1 for found in opening), opening
    assert len(set(opening)) == 1, opening  # never some secrets under one, some the other
    return candidates[next(iter(opening[0]))]


def _snapshot(home: Path) -> bytes:
    """The database's bytes with everything committed in them (the write-ahead log moved into
    the file first): equal before and after exactly when nothing was written."""
    with contextlib.closing(sqlite3.connect(home / "issuer.db", isolation_level=None)) as db:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    return (home / "issuer.db").read_bytes()


def _secret_free(*texts: str) -> None:
    for text in texts:
        assert OLD not in text and NEW not in text


# -- the change -------------------------------------------------------------------------------

def test_every_secret_is_resealed_and_only_the_new_passphrase_opens_the_office(
        office: Path, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A retired key, a compromised one and a ledger token: every kind of sealed secret.
    first = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0]["kid"]
    assert run("issuer", "rotate", "--home", str(office))[0] == 0
    code, _, err = run("issuer", "compromised", first, "--since",
                       rfc3339(int(time.time()) - 60), "--home", str(office))
    assert code == 0, err
    assert run("issuer", "ledger", "--url", LEDGER, "--token", "ficha-secreta",
               "--home", str(office))[0] == 0
    code, _, err = _issue(run, office, tmp_path / "before.txt")
    assert code == 0, err
    listed = run("issuer", "keys", "--json", "--home", str(office))[1]
    assert sorted(k["status"] for k in json.loads(listed)) == ["active", "compromised"]
    before = _sealed(office)
    assert len(before) == 4  # root, two office keys, the token

    code, out, err = _change(run, office, monkeypatch, current=OLD, new=NEW)
    assert code == 0, err
    assert out == ("Frase de acceso cambiada: 4 secretos sellados de nuevo (la llave raíz, "
                   "2 llaves de oficina, la ficha del registro público) / Passphrase changed: "
                   "4 secrets re-sealed (the root key, 2 office keys, the ledger token)\n")
    assert "Sellando de nuevo 4 secretos" in err and "Re-sealing 4 secrets" in err
    assert "[issuer_passphrase_backups]" in err and "old passphrase" in err
    _secret_free(out, err)

    after = _sealed(office)
    assert set(after) == set(before) and all(after[s] != before[s] for s in before)
    assert _passphrase_of(office, OLD, NEW) == NEW
    # The old sealed bytes are gone from the files too: a clerk who left and knows the old
    # passphrase finds nothing it opens in the office's database or its log.
    files = b"".join(p.read_bytes() for p in office.glob("issuer.db*"))
    assert not [blob for blob in before.values() if blob in files]
    assert run("issuer", "keys", "--json", "--home", str(office))[1] == listed  # same keys

    monkeypatch.setenv("PASAPORTE_PASSPHRASE", OLD)
    for command in (["issue", "--claims", str(EXAMPLES / "claims-mexicali.json"), "--paper",
                     "--out", str(tmp_path / "refused.txt")],
                    ["bundle", "--out", str(tmp_path / "refused.cbor")], ["rotate"],
                    ["publish"]):
        code, _, err = run("issuer", *command, "--home", str(office))
        assert code == 1 and "[passphrase_wrong]" in err, (command, err)
    assert not (tmp_path / "refused.txt").exists() and not (tmp_path / "refused.cbor").exists()
    assert run("issuer", "keys", "--json", "--home", str(office))[1] == listed

    monkeypatch.setenv("PASAPORTE_PASSPHRASE", NEW)
    code, _, err = _issue(run, office, tmp_path / "after.txt")
    assert code == 0, err
    code, rotated, err = run("issuer", "rotate", "--home", str(office))
    assert code == 0, err
    assert _verify(run, office, tmp_path, tmp_path / "before.txt") == "accepted"
    assert _verify(run, office, tmp_path, tmp_path / "after.txt") == "accepted"
    # the ledger token opens too: what stops the publication now is only the absent node
    code, _, err = run("issuer", "publish", "--home", str(office))
    assert code == 1 and "[ledger_publish_unreachable]" in err and "passphrase_wrong" not in err
    assert _passphrase_of(office, OLD, NEW) == NEW  # the key made since, too
    assert rotated.strip() in run("issuer", "keys", "--home", str(office))[1]


def test_passphrases_through_a_real_pipe(office: Path, tmp_path: Path) -> None:
    """The installed entry point with a pipe for stdin (no terminal): the current passphrase's
    line, then the new one's twice; exit 1 for a wrong current one, 2 for a new one refused."""
    def cli(stdin: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PASAPORTE_PASSPHRASE", "PASAPORTE_NEW_PASSPHRASE")}
        return subprocess.run([sys.executable, "-m", "pasaporte.cli", "issuer", "passphrase",
                               "--home", str(office)], input=stdin, capture_output=True,
                              text=True, timeout=120, env=dict(env, PYTHONPATH=str(REPO)))

    unchanged = _snapshot(office)
    wrong = cli(f"no es la frase\n{NEW}\n{NEW}\n")
    assert wrong.returncode == 1 and "[passphrase_wrong]" in wrong.stderr
    differ = cli(f"{OLD}\n{NEW}\n{NEW[:-1]}\n")
    assert differ.returncode == 2 and "[passphrase_mismatch]" in differ.stderr
    assert _snapshot(office) == unchanged
    done = cli(f"{OLD}\n{NEW}\n{NEW}\n")
    assert done.returncode == 0, done.stderr
    assert "Passphrase changed: 2 secrets re-sealed" in done.stdout
    for result in (wrong, differ, done):
        _secret_free(result.stdout, result.stderr)
    assert _passphrase_of(office, OLD, NEW) == NEW


# -- refusals: nothing changes ----------------------------------------------------------------

def test_a_wrong_current_passphrase_changes_nothing_and_asks_no_further(
        office: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    unchanged = _snapshot(office)
    # Only the current passphrase is piped: had the new one been asked for before the current
    # one was checked, this would end in ``passphrase_required``.
    code, out, err = _change(run, office, monkeypatch, stdin="no es la frase\n")
    assert code == 1 and "[passphrase_wrong]" in err and out == ""
    code, out, err = _change(run, office, monkeypatch, current="no es la frase", new=NEW)
    assert code == 1 and "[passphrase_wrong]" in err and out == ""
    assert "Re-sealing" not in err
    _secret_free(err)
    assert _snapshot(office) == unchanged
    assert _passphrase_of(office, OLD, NEW) == OLD


@pytest.mark.parametrize(("given", "code"), [
    ({"stdin": f"{OLD}\ncorta\ncorta\n"}, "passphrase_short"),
    ({"stdin": f"{OLD}\n{NEW}\n{NEW} \n"}, "passphrase_mismatch"),
    ({"stdin": f"{OLD}\n{OLD}\n{OLD}\n"}, "passphrase_unchanged"),
    ({"stdin": f"{OLD}\n{NEW}\n"}, "passphrase_repeat_missing"),  # the new one, once
    ({"current": OLD, "new": "corta"}, "passphrase_short"),
    ({"current": OLD, "new": OLD}, "passphrase_unchanged"),
], ids=["short", "differing", "same", "unrepeated", "short-env", "same-env"])
def test_a_new_passphrase_refused_changes_nothing(office: Path, run: Run,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  given: dict[str, str], code: str) -> None:
    unchanged = _snapshot(office)
    status, out, err = _change(run, office, monkeypatch, **given)
    assert status == 2 and f"[{code}]" in err and out == ""
    assert "Re-sealing" not in err  # refused before any work is announced
    _secret_free(err)
    assert _snapshot(office) == unchanged
    assert _passphrase_of(office, OLD, NEW) == OLD
    if code == "passphrase_unchanged":
        assert "nada que cambiar" in err and "nothing to change" in err


def test_a_missing_office_is_said_before_any_passphrase(homes: dict[str, Path], run: Run,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = _change(run, homes["issuer"], monkeypatch)
    assert code == 1 and "[issuer_not_initialised]" in err


def test_a_secret_the_current_passphrase_does_not_open_stops_the_change(
        office: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every secret is opened before the new passphrase is asked for: one under another
    passphrase (here the ledger token, the last one opened) refuses the change whole, rather
    than leave that secret under a passphrase nobody knows."""
    with contextlib.closing(sqlite3.connect(office / "issuer.db")) as db, db:
        db.execute("INSERT INTO meta (k, v) VALUES ('ledger_token', ?)",
                   (b64url(seal(b"ficha", "otra frase / another one")),))
        db.execute("INSERT INTO meta (k, v) VALUES ('ledger_url', ?)", (LEDGER,))
    unchanged = _snapshot(office)
    code, out, err = _change(run, office, monkeypatch, stdin=f"{OLD}\n")
    assert code == 1 and "[passphrase_wrong]" in err and out == ""
    assert _snapshot(office) == unchanged
    sealed = _sealed(office)
    assert _opens(sealed.pop(("ledger_token", b"")), "otra frase / another one")
    assert all(_opens(blob, OLD) for blob in sealed.values())


# -- other writers meanwhile ------------------------------------------------------------------

def test_a_key_made_while_the_change_seals_is_sealed_under_the_new_one_too(
        office: Path, run: Run) -> None:
    """Sealing is done before the store's write lock is taken; a key another clerk made in the
    meantime is sealed in the change's transaction, not left under the old passphrase."""
    store = IssuerStore.open(office)
    opened = reseal.open_all(store, OLD)
    assert run("issuer", "rotate", "--home", str(office))[0] == 0  # another clerk, with OLD
    counts = reseal.reseal(store, opened, NEW)
    assert counts == {"root": 1, "office": 2}
    assert _passphrase_of(office, OLD, NEW) == NEW


def test_a_key_or_token_sealed_after_a_change_committed_is_refused(
        office: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clerk's rotate (or ledger setup) checked the old passphrase, then waited for the lock
    while another's change committed: sealed under the old one, its key split the office
    between two passphrases, the new one unable to issue and neither able to change it again.
    Refused (``passphrase_changed_meanwhile``), nothing changed, one passphrase left."""
    store = IssuerStore.open(office)
    proving = IssuerStore._passphrase_proof

    def then_changed(self: IssuerStore, passphrase: str) -> bytes:
        proof = proving(self, passphrase)
        reseal.reseal(self, reseal.open_all(self, OLD), NEW)  # the other clerk's, committed
        return proof

    monkeypatch.setattr(IssuerStore, "_passphrase_proof", then_changed)
    keys_before = store.office_keys()
    with pytest.raises(StoreError) as caught:
        store.add_office_key(OLD)
    assert caught.value.code == "passphrase_changed_meanwhile"
    assert "issuer passphrase" in caught.value.message["en"]
    assert store.office_keys() == keys_before and _passphrase_of(office, OLD, NEW) == NEW
    monkeypatch.setattr(IssuerStore, "_passphrase_proof", proving)
    monkeypatch.setattr("issuer.store.check_access",
                        lambda *_: reseal.reseal(store, reseal.open_all(store, NEW), OLD))
    with pytest.raises(StoreError) as caught:  # changed back while the node was asked
        store.configure_ledger(LEDGER, "lt_token", NEW)
    assert caught.value.code == "passphrase_changed_meanwhile"
    assert _passphrase_of(office, OLD, NEW) == OLD
    assert ("ledger_token", b"") not in _sealed(office)  # no token saved, under either


def test_two_changes_at_once_leave_one_passphrase(office: Path, run: Run,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A change whose secrets another change re-sealed since it opened them is refused whole:
    the home stays under the other change's passphrase."""
    store = IssuerStore.open(office)
    opened = reseal.open_all(store, OLD)
    code, _, err = _change(run, office, monkeypatch, current=OLD, new=NEW)
    assert code == 0, err
    unchanged = _snapshot(office)
    with pytest.raises(StoreError) as refused:
        reseal.reseal(store, opened, "una tercera frase / a third one")
    assert refused.value.code == "passphrase_wrong"
    assert _snapshot(office) == unchanged
    assert _passphrase_of(office, OLD, NEW, "una tercera frase / a third one") == NEW


# -- crashes ----------------------------------------------------------------------------------

# Where the process kills itself (SIGKILL: no clean-up of any kind runs): at the second secret
# sealed anew (nothing written yet), once two secrets are written inside the open transaction,
# and after the commit (in the clean-up of the log that follows it).
_KILL_AT = {
    "sealing": ("seal", 2, OLD),
    "writing": ("_write", 2, OLD),
    "committed": ("_checkpoint", 1, NEW),
}


def _killed_change(home: Path, what: str, call: int) -> subprocess.CompletedProcess[str]:
    script = (
        "import os, signal, sys\n"
        "from issuer import reseal\n"
        "from pasaporte.cli import main\n"
        f"real, calls = reseal.{what}, []\n"
        "def counted(*args):\n"
        "    result = real(*args)\n"
        "    calls.append(1)\n"
        f"    if len(calls) == {call}: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return result\n"
        f"reseal.{what} = counted\n"
        "sys.exit(main(sys.argv[1:]))\n")
    return subprocess.run(
        [sys.executable, "-c", script, "issuer", "passphrase", "--home", str(home)],
        env=dict(os.environ, PYTHONPATH=str(REPO), PASAPORTE_PASSPHRASE=OLD,
                 PASAPORTE_NEW_PASSPHRASE=NEW), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("at", sorted(_KILL_AT))
def test_a_change_killed_midway_leaves_one_passphrase_for_every_secret(
        office: Path, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        at: str) -> None:
    assert run("issuer", "rotate", "--home", str(office))[0] == 0
    assert run("issuer", "ledger", "--url", LEDGER, "--token", "ficha-secreta",
               "--home", str(office))[0] == 0
    unchanged = _snapshot(office)
    what, call, left = _KILL_AT[at]
    killed = _killed_change(office, what, call)
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # it died there, not after
    assert killed.stdout == ""
    assert _passphrase_of(office, OLD, NEW) == left
    if left == OLD:
        assert _snapshot(office) == unchanged  # not a byte of it written
    # The home is not left locked or damaged: the office goes on with that passphrase, and
    # the change, run again, completes (or has nothing left to change).
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", left)
    code, _, err = _issue(run, office, tmp_path / "p.txt")
    assert code == 0, err
    code, _, err = _change(run, office, monkeypatch, current=left, new=NEW)
    assert (code, "[passphrase_unchanged]" in err) == ((0, False) if left == OLD
                                                              else (2, True)), err
    assert _passphrase_of(office, OLD, NEW) == NEW


def test_a_change_killed_at_any_moment_leaves_one_passphrase(
        office: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """No injected fault: the real command, killed from outside at moments spread over its
    re-sealing (from the line that announces it), wherever each lands. Each change goes from
    whichever passphrase the last one left to a new one."""
    for _ in range(3):
        assert run("issuer", "rotate", "--home", str(office))[0] == 0
    assert run("issuer", "ledger", "--url", LEDGER, "--token", "ficha-secreta",
               "--home", str(office))[0] == 0
    secrets = len(_sealed(office))  # root, four office keys, the token
    started = time.monotonic()
    seal(b"x" * 32, OLD)
    resealing = secrets * (time.monotonic() - started)  # about how long the re-sealing takes
    current, outcomes = OLD, []
    # at once again, up to three more times, if no kill landed before the commit: on a loaded
    # machine this process may be scheduled only after the whole re-sealing is done
    shares = [0.0, 0.5, 0.9, 1.1, 1.5, 0.0, 0.0, 0.0]
    for number, share in enumerate(shares):
        if number >= 5 and (-signal.SIGKILL, False) in outcomes:
            break
        new = f"frase número {number} / passphrase number {number}"
        env = dict(os.environ, PYTHONPATH=str(REPO), PASAPORTE_PASSPHRASE=current,
                   PASAPORTE_NEW_PASSPHRASE=new)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pasaporte.cli", "issuer", "passphrase", "--home",
             str(office)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        assert proc.stderr is not None
        try:
            for line in proc.stderr:
                if "Re-sealing" in line:
                    break
            else:
                raise AssertionError("the change ended before it re-sealed anything")
            time.sleep(share * resealing)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
            proc.stderr.close()
        assert proc.returncode in (0, -signal.SIGKILL)
        now = _passphrase_of(office, current, new)
        assert proc.returncode == -signal.SIGKILL or now == new  # ended: it is changed
        outcomes.append((proc.returncode, now == new))
        current = now
    assert (-signal.SIGKILL, False) in outcomes  # some kill did land before the commit
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", current)
    assert run("issuer", "rotate", "--home", str(office))[0] == 0  # not locked, not damaged


# -- backups ----------------------------------------------------------------------------------

def test_a_backup_made_before_keeps_the_old_passphrase(
        office: Path, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code, issued, err = _issue(run, office, tmp_path / "before.txt")
    assert code == 0, err
    code, _, err = run("issuer", "backup", "--out", str(tmp_path / "old.bak"),
                       "--home", str(office))
    assert code == 0, err
    assert _change(run, office, monkeypatch, current=OLD, new=NEW)[0] == 0

    # The new passphrase does not open the old backup; nothing is made.
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", NEW)
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "old.bak"),
                       "--home", str(tmp_path / "refused"))
    # and the clerk is told which passphrase does: the one in force when it was made
    assert code == 1 and "[backup_passphrase_wrong]" in err and "old.bak" in err, err
    assert "use the earlier one" in err and "use la anterior" in err
    assert not (tmp_path / "refused").exists()

    # The old passphrase does, and the restored office keeps it (the key the restore adds too).
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", OLD)
    restored = tmp_path / "restored"
    code, out, err = run("issuer", "restore", "--from", str(tmp_path / "old.bak"),
                         "--home", str(restored))
    assert code == 0 and "1 pasaportes" in out, err
    assert _passphrase_of(restored, OLD, NEW) == OLD
    assert len(_sealed(restored)) == 3  # root, the backup's key (now compromised), a new one
    status = json.loads(run("issuer", "status", issued.strip(), "--json",
                            "--home", str(restored))[1])
    assert status["status"] == "valid"
    code, _, err = _issue(run, restored, tmp_path / "restored.txt")
    assert code == 0, err
    # ... until it is changed there as well
    code, _, err = _change(run, restored, monkeypatch, current=OLD, new=NEW)
    assert code == 0, err
    assert _passphrase_of(restored, OLD, NEW) == NEW

    # A backup made after the change is under the new passphrase only.
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", NEW)
    code, _, err = run("issuer", "backup", "--out", str(tmp_path / "new.bak"),
                       "--home", str(office))
    assert code == 0, err
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", OLD)
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "new.bak"),
                       "--home", str(tmp_path / "old-refused"))
    assert code == 1 and "[backup_passphrase_wrong]" in err
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", NEW)
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "new.bak"),
                       "--home", str(tmp_path / "restored-new"))
    assert code == 0, err
    assert _passphrase_of(tmp_path / "restored-new", OLD, NEW) == NEW
