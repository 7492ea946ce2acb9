"""``pasaporte wallet passphrase``: a resident who told someone their passphrase changes it.

Afterwards the old passphrase opens nothing, the new one presents passports a real counter
accepts, and every stored passport is still there. Every refusal (a wrong current passphrase, a
new one too short, mistyped, or no change at all) leaves the wallet file byte for byte as it
was; and a change killed mid-way leaves a wallet that opens with exactly one of the two.
Real CLI, real wallet files, real signed credentials: nothing is mocked. The crash tests inject
the kill itself, into the real command run as ``python -m pasaporte.cli``, as a power cut would.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from credential.errors import PasaporteError, StoreError, UsageError
from credential.home import held_lock
from credential.keys import unb64url, unseal
from tests.factory import City
from tests.wallet_cli.conftest import PASSPHRASE, Run, example_claims
from wallet_cli import store
from wallet_cli.store import Wallet

REPO = Path(__file__).resolve().parents[2]
NEW = "otra frase, solo mía / another, mine alone"
CHANGED = "Frase de acceso cambiada / Passphrase changed"


@pytest.fixture
def stocked(wallet_home: Path, mexicali: City, calexico: City) -> tuple[Path, list[str]]:
    """A wallet holding two passports, from both sides of the border; their ids."""
    wallet = Wallet.open(wallet_home)
    ids = [wallet.import_text(city.issue_text(wallet.public_key, example_claims(name))).id
           for city, name in ((mexicali, "mexicali"), (calexico, "calexico"))]
    return wallet_home, sorted(ids)


def _wallet_file(home: Path) -> Path:
    return home / store.WALLET_FILE


def _opens(home: Path, passphrase: str) -> bool:
    """Whether ``passphrase`` opens the wallet, forgiven as ``present`` forgives it."""
    try:
        Wallet.open(home).unlock(passphrase)
    except StoreError as exc:
        assert exc.code == "wallet_passphrase_wrong", exc.code
        return False
    return True


def _sealed_exactly_under(home: Path, passphrase: str) -> bool:
    """Whether the key is sealed under ``passphrase`` itself, without ``unlock``'s forgiveness."""
    doc = json.loads(_wallet_file(home).read_text("utf-8"))
    try:
        unseal(unb64url(doc["sealed_key"]), passphrase)
    except StoreError:
        return False
    return True


def _listed(run: Run, home: Path) -> list[str]:
    result = run("wallet", "list", "--json", "--home", home)
    assert result.exit_code == 0 and result.stderr == "", result.output
    return sorted(e["id"] for e in json.loads(result.stdout))


def _refused(result: object, kind: type[PasaporteError], code: str) -> PasaporteError:
    exc = getattr(result, "exception", None)
    assert isinstance(exc, kind), (getattr(result, "output", ""), exc)
    assert exc.code == code
    assert exc.message["es"] and exc.message["en"] and exc.message["es"] != exc.message["en"]
    return exc


def _no_secret_in(*texts: str) -> None:
    for text in texts:
        for secret in (PASSPHRASE, NEW, PASSPHRASE.swapcase()):
            assert secret not in text


# -- a change that works ----------------------------------------------------------------------

def test_the_new_passphrase_replaces_the_old_and_every_passport_stays(
        run: Run, stocked: tuple[Path, list[str]], mexicali: City, calexico: City,
        monkeypatch: pytest.MonkeyPatch) -> None:
    home, ids = stocked
    before = json.loads(_wallet_file(home).read_text("utf-8"))
    key = run("wallet", "key", "--home", home).stdout
    monkeypatch.setenv("PASAPORTE_NEW_PASSPHRASE", NEW)

    changed = run("wallet", "passphrase", "--home", home)

    assert changed.exit_code == 0, changed.output
    assert changed.stdout == f"{CHANGED}: {home}\n"  # one bilingual line, nothing else
    _no_secret_in(changed.stdout, changed.stderr)
    # The old passphrase is refused the way ``present`` refuses any wrong one.
    for cred_id in ids:
        old = run("wallet", "present", cred_id, "--for", "library", "--home", home)
        _refused(old, StoreError, "wallet_passphrase_wrong")
        assert old.stdout == ""
    # The new one presents each passport, and a real counter of its city accepts the code.
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", NEW)
    for cred_id, city in zip(ids, _cities_of(home, ids, mexicali, calexico), strict=True):
        shown = run("wallet", "present", cred_id, "--for", "library", "--home", home)
        assert shown.exit_code == 0, shown.stderr
        assert city.verifier().verify(shown.stdout.strip(), service="library").accepted
    assert _listed(run, home) == ids
    # The same key (the office issued to it), the same file but for the sealed key, still 0600.
    assert run("wallet", "key", "--home", home).stdout == key
    after = json.loads(_wallet_file(home).read_text("utf-8"))
    assert after["sealed_key"] != before["sealed_key"]
    assert {k: v for k, v in after.items() if k != "sealed_key"} == {
        k: v for k, v in before.items() if k != "sealed_key"}
    assert stat.S_IMODE(_wallet_file(home).stat().st_mode) == 0o600
    assert _sealed_exactly_under(home, NEW) and not _opens(home, PASSPHRASE)


def _cities_of(home: Path, ids: list[str], *cities: City) -> list[City]:
    by_code = {c.code: c for c in cities}
    return [by_code[Wallet.open(home).load(i).payload.iss] for i in ids]


def test_the_new_passphrase_is_kept_without_blanks_at_its_ends(
        run: Run, wallet_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``wallet init`` keeps a chosen one: a password manager's paste brings blanks."""
    monkeypatch.setenv("PASAPORTE_NEW_PASSPHRASE", f"  {NEW}\t ")
    assert run("wallet", "passphrase", "--home", wallet_home).exit_code == 0
    assert _sealed_exactly_under(wallet_home, NEW)


def test_caps_lock_on_the_current_passphrase_is_forgiven_and_said(
        run: Run, wallet_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", PASSPHRASE.swapcase())  # CORRECT HORSE …
    monkeypatch.setenv("PASAPORTE_NEW_PASSPHRASE", NEW)
    changed = run("wallet", "passphrase", "--home", wallet_home)
    assert changed.exit_code == 0, changed.output
    assert "[wallet_passphrase_caps_lock]" in changed.stderr and "Caps Lock" in changed.stderr
    assert changed.stdout == f"{CHANGED}: {wallet_home}\n"
    _no_secret_in(changed.stdout, changed.stderr)
    assert _opens(wallet_home, NEW) and not _opens(wallet_home, PASSPHRASE)


# -- where the passphrases come from ----------------------------------------------------------

@pytest.mark.parametrize("given", ["both piped", "current from env", "new from env"])
def test_passphrases_from_the_environment_or_a_pipe_current_first(
        run: Run, wallet_home: Path, monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    if given == "both piped":
        monkeypatch.delenv("PASAPORTE_PASSPHRASE")
        piped = f"{PASSPHRASE}\n{NEW}\n{NEW}\n"  # current, new, new again
    elif given == "current from env":
        piped = f"{NEW}\n{NEW}\n"
    else:
        monkeypatch.delenv("PASAPORTE_PASSPHRASE")
        monkeypatch.setenv("PASAPORTE_NEW_PASSPHRASE", NEW)
        piped = f"{PASSPHRASE}\n"
    changed = run("wallet", "passphrase", "--home", wallet_home, input=piped)
    assert changed.exit_code == 0, changed.output
    assert changed.stdout == f"{CHANGED}: {wallet_home}\n"
    _no_secret_in(changed.stdout, changed.stderr)
    assert _sealed_exactly_under(wallet_home, NEW) and not _opens(wallet_home, PASSPHRASE)


def test_the_new_passphrase_piped_first_is_a_wrong_current_one(
        run: Run, wallet_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The order is fixed (current, new, new): a script that gets it wrong changes nothing."""
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    before = _wallet_file(wallet_home).read_bytes()
    swapped = run("wallet", "passphrase", "--home", wallet_home,
                  input=f"{NEW}\n{NEW}\n{PASSPHRASE}\n")
    _refused(swapped, StoreError, "wallet_passphrase_wrong")
    assert _wallet_file(wallet_home).read_bytes() == before


def test_through_the_real_process_with_exit_codes(stocked: tuple[Path, list[str]],
                                                  tmp_path: Path) -> None:
    """The installed entry point with a real pipe for stdin (no terminal): 1 for the wrong
    current passphrase, 2 for a new one refused, 0 for the change."""
    home, ids = stocked
    before = _wallet_file(home).read_bytes()
    wrong = _cli(home, stdin=f"no es la mía\n{NEW}\n{NEW}\n")
    assert wrong.returncode == 1 and "[wallet_passphrase_wrong]" in wrong.stderr
    short = _cli(home, stdin=f"{PASSPHRASE}\ncorta\ncorta\n")
    assert short.returncode == 2 and "[passphrase_short]" in short.stderr
    same = _cli(home, stdin=f"{PASSPHRASE}\n{PASSPHRASE}\n{PASSPHRASE}\n")
    assert same.returncode == 2 and "[wallet_passphrase_unchanged]" in same.stderr
    assert _wallet_file(home).read_bytes() == before
    for refused in (wrong, short, same):
        assert refused.stdout == ""
        _no_secret_in(refused.stderr)
    done = _cli(home, stdin=f"{PASSPHRASE}\n{NEW}\n{NEW}\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{CHANGED}: {home}\n"
    _no_secret_in(done.stdout, done.stderr)
    assert _opens(home, NEW) and not _opens(home, PASSPHRASE)
    assert sorted(Wallet.open(home).ids()) == ids


def _cli(home: Path, *, stdin: str | None = None, env: dict[str, str] | None = None,
         fault_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pasaporte.cli", "wallet", "passphrase",
                           "--home", str(home)], env=_env(env, fault_dir), text=True,
                          capture_output=True, timeout=120, input=stdin,
                          stdin=subprocess.DEVNULL if stdin is None else None, check=False)


def _start(home: Path, stdin: str, *, env: dict[str, str] | None = None,
           fault_dir: Path | None = None) -> subprocess.Popen[str]:
    """As ``_cli``, not waited for; its standard input a file (all of it there at once)."""
    given = home.parent / f"stdin-{time.monotonic_ns()}"
    given.write_text(stdin, "utf-8")
    with open(given, encoding="utf-8") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "pasaporte.cli", "wallet", "passphrase", "--home", str(home)],
            env=_env(env, fault_dir), stdin=fh, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)


def _env(extra: dict[str, str] | None, fault_dir: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"PASAPORTE_PASSPHRASE", "PASAPORTE_NEW_PASSPHRASE", "PASAPORTE_HOME"}}
    path = [str(fault_dir)] if fault_dir is not None else []
    env["PYTHONPATH"] = os.pathsep.join([*path, str(REPO)])
    env.update(extra or {})
    return env


# -- refusals: nothing changes ----------------------------------------------------------------

def test_a_wrong_current_passphrase_changes_nothing_and_asks_no_further(
        run: Run, stocked: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    home, ids = stocked
    before = _wallet_file(home).read_bytes()
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    # Only the current passphrase is piped: were the new one asked for first, this would end
    # in ``passphrase_required`` instead.
    wrong = run("wallet", "passphrase", "--home", home, input="no es la mía\n")
    exc = _refused(wrong, StoreError, "wallet_passphrase_wrong")
    assert str(home) in exc.message["es"] and str(home) in exc.message["en"]
    assert wrong.stdout == ""
    assert _wallet_file(home).read_bytes() == before
    assert _listed(run, home) == ids and _opens(home, PASSPHRASE)


@pytest.mark.parametrize(("piped_new", "kind", "code"), [
    ("corta\ncorta\n", UsageError, "passphrase_short"),
    # Ten characters typed, seven once the blanks at the ends are dropped, as init drops them.
    ("  abc1234 \n  abc1234 \n", UsageError, "passphrase_short"),
    (f"{NEW}\n{NEW}!\n", UsageError, "passphrase_mismatch"),
    (f"{PASSPHRASE}\n{PASSPHRASE}\n", UsageError, "wallet_passphrase_unchanged"),
    (f" {PASSPHRASE} \n {PASSPHRASE} \n", UsageError, "wallet_passphrase_unchanged"),
    # The current one typed with caps lock on opens the wallet too: no change either.
    (f"{PASSPHRASE.swapcase()}\n{PASSPHRASE.swapcase()}\n", UsageError,
     "wallet_passphrase_unchanged"),
])
def test_a_new_passphrase_refused_changes_nothing(
        run: Run, stocked: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch,
        piped_new: str, kind: type[PasaporteError], code: str) -> None:
    home, ids = stocked
    before = _wallet_file(home).read_bytes()
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    refused = run("wallet", "passphrase", "--home", home, input=f"{PASSPHRASE}\n{piped_new}")
    exc = _refused(refused, kind, code)
    assert refused.stdout == ""
    _no_secret_in(refused.stderr, exc.diagnostics())
    assert _wallet_file(home).read_bytes() == before
    assert _listed(run, home) == ids and _opens(home, PASSPHRASE)


def test_the_new_passphrase_variable_is_held_to_the_same_rules(
        run: Run, wallet_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _wallet_file(wallet_home).read_bytes()
    for value, code in (("corta", "passphrase_short"),
                        ("          ", "passphrase_short"),  # blanks only: empty once trimmed
                        (PASSPHRASE, "wallet_passphrase_unchanged")):
        monkeypatch.setenv("PASAPORTE_NEW_PASSPHRASE", value)
        _refused(run("wallet", "passphrase", "--home", wallet_home), UsageError, code)
        assert _wallet_file(wallet_home).read_bytes() == before


def test_no_wallet_is_said_before_any_passphrase_is_asked(run: Run, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    missing = run("wallet", "passphrase", "--home", tmp_path / "none", input="")
    _refused(missing, StoreError, "wallet_not_initialised")
    assert not (tmp_path / "none").exists()


# -- the file is replaced whole, under the wallet's lock --------------------------------------

# Loaded by the child's ``site`` (first on its PYTHONPATH): the real ``python -m pasaporte.cli``
# runs, and dies (SIGKILL: a power cut, no clean-up) at the point named in PASAPORTE_TEST_KILL,
# or says when it asks for the wallet's lock (PASAPORTE_TEST_LOCK_MARK).
_FAULTS = textwrap.dedent("""\
    import fcntl, os, signal

    _at = os.environ.get("PASAPORTE_TEST_KILL")
    _mark = os.environ.get("PASAPORTE_TEST_LOCK_MARK")
    _replace, _flock = os.replace, fcntl.flock

    def _die():
        os.kill(os.getpid(), signal.SIGKILL)

    def replace(src, dst, *args, **kwargs):
        if _at and os.path.basename(str(dst)) == "wallet.json":
            if _at == "before-rename":
                _die()
            _replace(src, dst, *args, **kwargs)
            _die()  # after the rename, before the folder is flushed and the command ends
        return _replace(src, dst, *args, **kwargs)

    def flock(fd, operation):
        if _mark:
            open(_mark, "w").close()
        return _flock(fd, operation)

    os.replace, fcntl.flock = replace, flock
    """)


@pytest.fixture
def fault_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "faults"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(_FAULTS, "utf-8")
    return folder


@pytest.mark.parametrize("at", ["before-rename", "after-rename"])
def test_a_killed_change_leaves_the_old_passphrase_or_the_new_never_neither(
        run: Run, stocked: tuple[Path, list[str]], fault_dir: Path, at: str) -> None:
    home, ids = stocked
    before = _wallet_file(home).read_bytes()
    killed = _cli(home, stdin=f"{PASSPHRASE}\n{NEW}\n{NEW}\n", fault_dir=fault_dir,
                  env={"PASAPORTE_TEST_KILL": at})
    # It did die, at the rename of the wallet file: a change that wrote the file in place
    # would never rename it, and end normally.
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stdout == ""

    if at == "before-rename":
        assert _wallet_file(home).read_bytes() == before  # not a byte of it touched
    assert _opens(home, PASSPHRASE) == (at == "before-rename")
    assert _opens(home, NEW) == (at == "after-rename")
    assert _listed(run, home) == ids  # a leftover temporary file is no passport

    # Run again with whichever passphrase now opens it: it completes, or says there is
    # nothing to change.
    current = PASSPHRASE if at == "before-rename" else NEW
    again = _cli(home, stdin=f"{current}\n{NEW}\n{NEW}\n")
    assert again.returncode == (0 if at == "before-rename" else 2), again.stderr
    assert _opens(home, NEW) and not _opens(home, PASSPHRASE)
    assert _listed(run, home) == ids


def test_a_change_killed_at_any_moment_opens_with_exactly_one_passphrase(
        run: Run, stocked: tuple[Path, list[str]]) -> None:
    """No injected fault: the real command, killed after delays spread over how long it takes
    here (measured on a copy), wherever that lands; each run starts from what the one before
    left, with whichever passphrase that opens."""
    home, ids = stocked
    copy = home.parent / "copy"
    copy.mkdir(mode=0o700)
    (copy / store.WALLET_FILE).write_bytes(_wallet_file(home).read_bytes())
    started = time.monotonic()
    assert _cli(copy, stdin=f"{PASSPHRASE}\n{NEW}\n{NEW}\n").returncode == 0
    took = time.monotonic() - started

    current = PASSPHRASE
    # From at once to well past the measured time: the last kills mostly land after the end.
    for step in range(10):
        other = NEW if current == PASSPHRASE else PASSPHRASE
        proc = _start(home, f"{current}\n{other}\n{other}\n")
        time.sleep(took * step / 6)
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        opens_current, opens_other = _opens(home, current), _opens(home, other)
        assert opens_current != opens_other, (step, proc.returncode, err)  # exactly one
        if proc.returncode == 0:  # it ended before the kill: then the change is made
            assert opens_other and out == f"{CHANGED}: {home}\n"
        if opens_other:
            current = other
        assert _listed(run, home) == ids
    assert Wallet.open(home).ids() == ids


def test_the_file_is_written_holding_the_wallets_lock(
        stocked: tuple[Path, list[str]], fault_dir: Path, tmp_path: Path) -> None:
    """An ``import`` or ``trust`` holding the lock is waited for: the change is not made until
    it lets go."""
    home, ids = stocked
    before = _wallet_file(home).read_bytes()
    mark = tmp_path / "asked-for-the-lock"
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with held_lock(home / store.LOCK_FILE):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        proc = _start(home, f"{PASSPHRASE}\n{NEW}\n{NEW}\n",
                      env={"PASAPORTE_TEST_LOCK_MARK": str(mark)}, fault_dir=fault_dir)
        deadline = time.monotonic() + 60
        while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert mark.exists(), "the change never asked for the wallet's lock"
        time.sleep(0.5)
        assert proc.poll() is None  # waiting on the lock …
        assert _wallet_file(home).read_bytes() == before  # … with nothing written yet
    finally:
        release.set()
        holder.join()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out == f"{CHANGED}: {home}\n"
    assert _opens(home, NEW) and sorted(Wallet.open(home).ids()) == ids


def test_a_change_made_meanwhile_by_another_process_is_not_undone(
        stocked: tuple[Path, list[str]]) -> None:
    """Two changes at once, the slower opened before the faster wrote: the slower, whose
    current passphrase no longer opens the file, writes nothing over the faster's."""
    home, _ = stocked
    slow = Wallet.open(home)  # opened under the first passphrase
    fast = Wallet.open(home)
    fast.change_passphrase(PASSPHRASE, NEW)
    after_fast = _wallet_file(home).read_bytes()
    third = "una tercera frase / a third one"
    with pytest.raises(StoreError) as refused:
        slow.change_passphrase(PASSPHRASE, third)
    assert refused.value.code == "wallet_passphrase_wrong"
    assert _wallet_file(home).read_bytes() == after_fast
    assert _opens(home, NEW) and not _opens(home, third)
