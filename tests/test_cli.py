"""``pasaporte`` itself: every failure ends as a bilingual line and an exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from pasaporte.cli import main
from tests.conftest import Run
from tests.factory import EXAMPLES


def _boom(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("something nobody foresaw")


def test_an_unforeseen_failure_is_a_bilingual_line_not_a_traceback(
        homes: dict[str, Path], passphrase: str, run: Run,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("issuer.store.IssuerStore.create", _boom)
    code, _, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
                       "Centro", "--home", str(homes["issuer"]))
    assert code == 1 and "[internal_error]" in err and "RuntimeError" in err
    assert "Error inesperado" in err and "PASAPORTE_DEBUG=1" in err
    monkeypatch.setenv("PASAPORTE_DEBUG", "1")
    with pytest.raises(RuntimeError):  # the traceback, for whoever investigates
        main(["issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
              "--home", str(homes["issuer"])])


def _interrupted(*_args: object, **_kwargs: object) -> None:
    raise KeyboardInterrupt


def test_ctrl_c_is_a_bilingual_line_with_its_code(homes: dict[str, Path], passphrase: str,
                                                  run: Run,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("issuer.store.IssuerStore.create", _interrupted)
    code, _, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
                       "Centro", "--home", str(homes["issuer"]))
    assert code == 130 and err.strip().startswith("[cancelled] Cancelado") and "Cancelled" in err


def test_a_new_passphrase_must_be_long_enough(homes: dict[str, Path], run: Run,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "corta")
    for role, args in (("issuer", ["issuer", "init", "--city", "Mexicali", "--country", "MX",
                                   "--office", "Centro"]),
                       ("wallet", ["wallet", "init"])):
        code, _, err = run(*args, "--home", str(homes[role]))
        assert code == 2 and "passphrase_short" in err and "8" in err, role
        assert not homes[role].exists() or not any(homes[role].iterdir())


def test_a_city_name_without_latin_letters_needs_a_code(homes: dict[str, Path], passphrase: str,
                                                        run: Run) -> None:
    args = ["issuer", "init", "--city", "東京", "--country", "JP", "--office", "本庁",
            "--home", str(homes["issuer"])]
    code, _, err = run(*args)
    assert code == 2 and "--code" in err
    code, out, _ = run(*args, "--code", "JPTYO")
    assert code == 0 and "JPTYO" in out


def test_one_folder_holds_one_roles_data(tmp_path: Path, passphrase: str, run: Run) -> None:
    """One PASAPORTE_HOME exported for a clerk put a resident's wallet (names and birth dates
    in clear) into the office's folder, and an office into a wallet, without a word."""
    office = ["issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro"]
    made = {"issuer": office, "wallet": ["wallet", "init"],
            "ledger": ["ledger", "init", "--origin", "pasaporte.example/log"]}
    for role, args in made.items():
        home = tmp_path / role
        assert run(*args, "--home", str(home))[0] == 0
        before = sorted(p.name for p in home.iterdir())
        for other, other_args in made.items():
            if other == role:
                continue
            code, out, err = run(*other_args, "--home", str(home))
            assert code == 2 and out == "", err
            assert err.startswith("[home_of_other_role]") and str(home) in err, err
            assert "Use otra carpeta" in err and "Use another folder" in err
        # nothing of theirs added (SQLite's -wal and -shm come and go with its connections)
        assert {p.name for p in home.iterdir()} <= set(before)


@pytest.mark.parametrize("args", [
    ["ledger", "mirror", "--from", "http://127.0.0.1:1", "--log-key", "nokey"],
    ["ledger", "mirror", "--from", "http://127.0.0.1:1", "--witness-key", "x+1+2"],
    ["ledger", "witness", "--log", "http://127.0.0.1:1", "--log-key", "nokey"],
    ["ledger", "witnesses", "add", "--url", "http://127.0.0.1:1", "--key", "nokey"],
])
def test_a_mistyped_verifier_key_is_a_usage_error(args: list[str], run: Run,
                                                  tmp_path: Path) -> None:
    code, _, err = run(*args, "--home", str(tmp_path / "node"))
    assert code == 2 and "[note_bad_key]" in err, err


@pytest.mark.parametrize(("args", "spanish"), [
    (["verify", "--service", "library"], "falta la opción '--bundle'"),
    (["verify", "--servic", "library"],
     "no existe la opción '--servic'. ¿Quiso decir '--service'?"),
    (["verify", "--service"], "la opción '--service' necesita un valor"),
    (["verify", "--service", "library", "--bundle", "/nowhere/b.cbor"],
     "valor no válido para '--bundle': el archivo '/nowhere/b.cbor' no existe"),
    (["verify", "--service", "library", "--bundle", "/"],
     "valor no válido para '--bundle': '/' es una carpeta, no un archivo"),
    (["issuer", "revokee"], "no existe la orden 'revokee'. ¿Quiso decir 'revoke'?"),
    (["issuer", "revoke"], "falta el argumento 'CREDENTIAL_ID'"),
    (["issuer", "revoke", "A", "B"], "sobra un argumento (B)"),
    (["issuer", "revoke", "A", "--reason"], "la opción '--reason' necesita un valor"),
    (["ledger", "append", "--file", "/nowhere/e.jsonl"],
     "valor no válido para '--file': el archivo '/nowhere/e.jsonl' no existe"),
    (["ledger", "serve", "--port", "abc"], "valor no válido para '--port': 'abc' no es un número"),
    (["ledger", "serve", "--port", "99999999"],
     "valor no válido para '--port': 99999999 está fuera del intervalo 0<=x<=65535"),
])
def test_command_line_mistakes_read_in_spanish_too(args: list[str], spanish: str,
                                                  run: Run) -> None:
    """The mistakes a clerk makes most at the command line are click's to find; its English
    wording is the English half, and the Spanish half says the same in Spanish (a click release
    that rewords a message shows up here, not at a counter)."""
    code, _, err = run(*args)
    es, _, en = err.strip().splitlines()[-1].partition(" / Incorrect use: ")
    assert code == 2 and es.startswith("[usage_error] Uso incorrecto: ") and en
    assert spanish in es


@pytest.mark.parametrize("args", [[], ["wallet"], ["ledger", "token"]])
def test_a_group_given_no_command_shows_its_help_once(args: list[str], run: Run) -> None:
    """Not the help page as a usage error's reason, standing in both its halves."""
    code, out, err = run(*args)
    assert code == 2 and out == ""
    assert err.count("Usage: ") == 1 and err.count("Commands:") == 1, err
    assert "[usage_error]" not in err


def _pasaporte(args: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    """The real command in its own process, with no terminal: stdin is a pipe or nothing."""
    env = {k: v for k, v in os.environ.items() if k != "PASAPORTE_PASSPHRASE"}
    return subprocess.run([sys.executable, "-m", "pasaporte", *args], env=env, text=True,
                          capture_output=True, timeout=120,
                          input=stdin, stdin=subprocess.DEVNULL if stdin is None else None)


def test_without_a_terminal_the_passphrase_comes_from_the_environment_or_a_pipe(
        tmp_path: Path) -> None:
    init = ["issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro"]
    proc = _pasaporte([*init, "--home", str(tmp_path / "a")], stdin=None)  # cron, a service
    assert proc.returncode == 2 and "[passphrase_required]" in proc.stderr
    assert "PASAPORTE_PASSPHRASE" in proc.stderr and "echoed" not in proc.stderr
    proc = _pasaporte([*init, "--home", str(tmp_path / "b")],
                      stdin="una frase larga\nuna frase larga\n")  # a script piping it
    assert proc.returncode == 0, proc.stderr
    assert "echoed" not in proc.stderr


def test_no_output_replaces_a_pipe(homes: dict[str, Path], passphrase: str, run: Run,
                                   tmp_path: Path) -> None:
    """``issuer root --out`` and ``wallet present --qr`` put a regular file in the place of a
    named pipe (as root, of /dev/null itself); each now refuses before anything is made."""
    issuer, wallet = str(homes["issuer"]), str(homes["wallet"])
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", issuer)[0] == 0
    assert run("wallet", "init", "--home", wallet)[0] == 0
    key = run("wallet", "key", "--home", wallet)[1].strip()
    cred = tmp_path / "c.txt"
    claims = str(EXAMPLES / "claims-mexicali.json")
    cred_id = run("issuer", "issue", "--claims", claims, "--holder-key", key,
                  "--out", str(cred), "--home", issuer)[1].strip()
    assert run("wallet", "import", str(cred), "--home", wallet)[0] == 0
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    for args in (["issuer", "root", "--out", str(pipe), "--home", issuer],
                 ["wallet", "present", cred_id, "--for", "library", "--qr", str(pipe),
                  "--home", wallet]):
        code, out, err = run(*args)
        assert (code, out) == (2, ""), err
        assert "[output_not_regular]" in err, err
        assert pipe.is_fifo()


def _reader_gone(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """The command in its own process whose stdout's reader has gone before it writes (``|
    head -1`` done, a probe keeping nothing): its exit status and what it said on stderr."""
    with subprocess.Popen([sys.executable, "-m", "pasaporte", *args], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=None if env is None else {**os.environ, **env}) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read()
        return proc.wait(timeout=120), err


def test_a_command_whose_reader_has_gone_ends_as_it_would_have(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """A critical ``ledger status`` stays 2 (click made it a silent 1, "warning"), and an issued
    passport stays issued, exit 0 (a script read 1 as refused and issued it again)."""
    code, err = _reader_gone(["ledger", "status", "--home", str(tmp_path / "none"), "--json"])
    assert code == 2, err
    office = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(office))[0] == 0
    code, err = _reader_gone(["issuer", "issue", "--claims",
                              str(EXAMPLES / "claims-mexicali.json"), "--paper", "--out",
                              str(tmp_path / "p.cred"), "--home", str(office)])
    # (a first passport's names are new to the catalogues: said, and nothing else)
    assert code == 0 and err.startswith("[catalog_new_names") and err.count("\n") == 1, err
    assert (tmp_path / "p.cred").is_file()


@pytest.mark.parametrize("env", [{"LC_ALL": "C", "PYTHONUTF8": "0"},
                                 {"PYTHONIOENCODING": "ascii"}])
def test_on_an_ascii_terminal_output_is_escaped_and_a_reader_gone_forgiven(
        env: dict[str, str], tmp_path: Path) -> None:
    """click takes an "ascii" stream for a misconfigured one and wrote around ours: raw UTF-8
    to a terminal judged unable to show it, and a reader gone a silent exit 1 again."""
    code, err = _reader_gone(["ledger", "status", "--home", str(tmp_path / "none"), "--json"],
                             env)
    assert code == 2, err
    shown = subprocess.run([sys.executable, "-m", "pasaporte", "ledger", "status", "--home",
                            str(tmp_path / "none")], capture_output=True,
                           env={**os.environ, **env}, check=False)
    assert shown.returncode == 2 and shown.stdout.isascii() and shown.stderr.isascii()
    assert b"\\u00" in shown.stdout + shown.stderr or b"<<" in shown.stdout + shown.stderr


@pytest.mark.parametrize("args", [
    ["wallet", "import", "-"],
    ["ledger", "append", "--file", "-"],
    ["issuer", "bulk", "-", "--out-dir", "print"],
])
def test_a_closed_standard_input_reads_as_an_empty_one(args: list[str], tmp_path: Path) -> None:
    """Started with stdin closed (``<&-``, a daemon launcher): as ``< /dev/null`` (it was
    "unexpected error, report it")."""
    proc = subprocess.run([sys.executable, "-m", "pasaporte", *args, "--home",
                           str(tmp_path / "h")], text=True, capture_output=True, timeout=120,
                          stdin=None, preexec_fn=lambda: os.close(0), cwd=tmp_path)
    assert "internal_error" not in proc.stderr and proc.returncode in (1, 2), proc.stderr
    assert proc.stderr.startswith("["), proc.stderr


def _every_command() -> list[tuple[str, click.Command, click.Context]]:
    from pasaporte.cli import cli

    found = []

    def walk(cmd: click.Command, path: str, parent: click.Context | None) -> None:
        ctx = cmd.context_class(cmd, info_name=path.rsplit(" ", 1)[-1], parent=parent)
        found.append((path, cmd, ctx))
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub, f"{path} {name}", ctx)

    walk(cli, "pasaporte", None)
    return found


def test_every_help_is_whole_and_in_both_languages() -> None:
    """A group's command list kept each command's Spanish and cut its English ("…/..."):
    ``ledger token`` listed Spanish only. And reST markup is for the source, not the help."""
    commands = _every_command()
    assert len(commands) > 40
    for path, cmd, ctx in commands:
        text = cmd.get_help(ctx)
        assert "``" not in text, path
        # click's own headings in Spanish too
        assert text.startswith("Uso / Usage: ") and "Opciones / Options:" in text, path
        if isinstance(cmd, click.Group):
            listing = text.split("Commands:", 1)[1]
            assert "..." not in listing, (path, listing)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None and " / " in sub.get_short_help_str(limit=10_000), (
                    f"{path} {name}")


def test_an_interrupt_after_the_command_is_done_changes_no_exit_status() -> None:
    """A Ctrl-C in the interpreter's shutdown, after the success line (a restore done), exited
    130 with no word, and a script retrying on 130 redid what had worked."""
    script = ("import os, signal, sys\n"
              "sys.argv = ['pasaporte', '--version']\n"
              "from pasaporte.cli import main\n"
              "code = main()\n"
              "os.kill(os.getpid(), signal.SIGINT)\n"
              "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip()  # the version, said


def test_an_interrupt_while_the_program_loads_is_a_cancel_not_a_traceback() -> None:
    """Ctrl-C in the installed program's first tenth of a second, while it was still importing
    its modules, printed a Python traceback: said as any cancel is, exit 130."""
    script = ("import os, signal, sys\n"
              "sys.argv = ['/usr/local/bin/pasaporte', 'wallet', 'list']\n"
              "import pasaporte\n"
              "os.kill(os.getpid(), signal.SIGINT)\n"
              "import pasaporte.cli\n"
              "print('went on')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 130 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr.startswith("[cancelled] Cancelado") and "Traceback" not in done.stderr
    # once loaded, an interrupt is the command's to handle, as before
    loaded = ("import os, signal, sys\n"
              "sys.argv = ['/usr/local/bin/pasaporte', '--version']\n"
              "from pasaporte.cli import main\n"
              "code = main(sys.argv[1:])\n"
              "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n")
    done = subprocess.run([sys.executable, "-c", loaded], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "True", done.stderr
