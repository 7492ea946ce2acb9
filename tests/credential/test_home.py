"""credential.home: StagedFile, a file put in place only when the work it belongs to is done,
and taken back, the file it replaced restored, when that work fails afterwards; and the
usage errors of reading a passphrase and naming a QR file."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from credential.errors import UsageError
from credential.home import StagedFile, atomic_write, resolve_home


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_commit_taken_back_restores_the_file_it_replaced(tmp_path: Path) -> None:
    target = tmp_path / "c.txt"
    target.write_bytes(b"earlier")
    staged = StagedFile(target)
    staged.write(b"new")
    assert target.read_bytes() == b"earlier"  # nothing in place before the commit
    staged.commit()
    assert target.read_bytes() == b"new"
    staged.undo()
    assert target.read_bytes() == b"earlier"
    staged.discard()
    assert _names(tmp_path) == ["c.txt"]


def test_a_commit_taken_back_where_there_was_nothing_leaves_nothing(tmp_path: Path) -> None:
    staged = StagedFile(tmp_path / "c.txt")
    staged.write(b"new")
    staged.commit()
    staged.undo()
    staged.discard()
    assert _names(tmp_path) == []


def test_a_kept_commit_leaves_only_the_new_file(tmp_path: Path) -> None:
    target = tmp_path / "c.txt"
    target.write_bytes(b"earlier")
    staged = StagedFile(target, mode=0o644)
    staged.write(b"new")
    staged.commit()
    staged.discard()  # the work succeeded: the commit is final
    staged.undo()
    assert _names(tmp_path) == ["c.txt"] and target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o644


def test_the_names_a_file_is_staged_under_are_known_as_its_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "MXMEX.bundle"
    target.write_bytes(b"earlier")
    staged = StagedFile(target)
    staged.write(b"new")
    staged.commit()  # now both a .tmp was used and a .prev is held
    leftovers = [n for n in _names(tmp_path) if n != target.name]
    (tmp_path / ".MXMEX.bundle.notes.txt").write_bytes(b"the resident's")
    pattern = StagedFile.leftovers(r"[A-Z]+\.bundle")
    assert leftovers and all(pattern.fullmatch(n) for n in leftovers)
    assert not any(pattern.fullmatch(n) for n in ("MXMEX.bundle", ".MXMEX.bundle.notes.txt",
                                                  ".MXMEX.bundlex.abc.tmp"))
    staged.discard()


def test_a_name_that_is_not_utf8_is_staged_as_its_bytes(tmp_path: Path) -> None:
    """Typed on a Latin-1 terminal: "Peña" as the bytes Pe\\xf1a. Its temporary name could
    not be made (UnicodeEncodeError: an "unexpected error" after nothing went wrong)."""
    target = tmp_path / os.fsdecode(b"Pe\xf1a" * 30 + b".cred")  # past the stem's cut, too
    staged = StagedFile(target)
    staged.write(b"new")
    staged.commit()
    staged.discard()
    assert os.listdir(os.fsencode(tmp_path)) == [os.fsencode(target.name)]


def test_a_name_too_long_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """In a folder still to be made nothing refused it until the final rename: a passport was
    issued and recorded, then left under a temporary name it could never leave."""
    target = tmp_path / "new" / ("ñ" * 128 + ".cred")  # 128 characters, 261 bytes
    with pytest.raises(OSError) as err:
        StagedFile(target)
    assert err.value.errno == errno.ENAMETOOLONG and err.value.filename == str(target)
    assert not (tmp_path / "new").exists()
    StagedFile(tmp_path / "new" / ("ñ" * 120 + ".cred")).discard()  # 245 bytes: taken


def test_an_uncommitted_file_is_discarded_without_a_trace(tmp_path: Path) -> None:
    target = tmp_path / "c.txt"
    target.write_bytes(b"earlier")
    staged = StagedFile(target)
    staged.write(b"new")
    staged.undo()  # nothing committed: nothing to take back
    staged.discard()
    assert _names(tmp_path) == ["c.txt"] and target.read_bytes() == b"earlier"


@pytest.mark.parametrize("swap", ["own file", "symlink"])
def test_a_temporary_file_swapped_in_a_shared_folder_gets_nothing(tmp_path: Path,
                                                                  swap: str) -> None:
    """Another user who can write to the folder replaces the temporary name between its making
    and its writing: with a file of theirs (which would then hold the passport) or a symlink to
    a file of root's (which would be overwritten). Written through the descriptor it was made
    with, neither gets a byte, and nothing is put in place."""
    victim = tmp_path / "victim.conf"
    victim.write_text("another program's settings")
    staged = StagedFile(tmp_path / "out.cred")
    assert staged.tmp is not None
    staged.tmp.unlink()
    if swap == "symlink":
        staged.tmp.symlink_to(victim)
    else:
        staged.tmp.write_text("")
    staged.write(b"PU1:SECRET")
    with pytest.raises(PermissionError):
        staged.commit()
    staged.discard()
    assert victim.read_text() == "another program's settings"
    assert not (tmp_path / "out.cred").exists()
    assert not any(b"SECRET" in p.read_bytes() for p in tmp_path.iterdir() if p.is_file())


def test_a_file_that_appears_at_a_kept_target_stays(tmp_path: Path) -> None:
    """Checked free before the work, taken by another clerk's passport meanwhile: theirs stays,
    and this one fails as existing (a rename would have replaced it)."""
    target = tmp_path / "ana.cred"
    staged = StagedFile(target, may_replace=lambda _found: False)
    staged.write(b"PU1:MINE")
    target.write_bytes(b"PU1:THEIRS")
    with pytest.raises(FileExistsError) as caught:
        staged.commit()
    assert caught.value.filename == str(target)  # not the temporary name nobody gave
    assert target.read_bytes() == b"PU1:THEIRS"
    kept = staged.keep()
    assert kept.read_bytes() == b"PU1:MINE"
    free = StagedFile(tmp_path / "luis.cred", may_replace=lambda _found: False)
    free.write(b"PU1:LUIS")
    free.commit()
    free.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.name, "ana.cred", "luis.cred"]


def test_folders_made_for_an_output_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        staged = StagedFile(tmp_path / "print" / "day" / "ana.cred")
        staged.write(b"PU1:X")
        staged.commit()
        staged.discard()
    finally:
        os.umask(previous)
    for folder in (tmp_path / "print", tmp_path / "print" / "day"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert (tmp_path / "print" / "day" / "ana.cred").stat().st_mode & 0o777 == 0o600


def test_a_long_name_that_may_be_written_can_be_staged(tmp_path: Path) -> None:
    target = tmp_path / ("ñ" * 100 + "a" * 50 + ".png")  # 254 bytes: within the limit
    staged = StagedFile(target)
    staged.write(b"png")
    staged.commit()
    staged.discard()
    assert _names(tmp_path) == [target.name] and target.read_bytes() == b"png"


def test_a_file_where_a_folder_should_be_is_named_as_such(tmp_path: Path) -> None:
    import pytest

    (tmp_path / "exist.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError) as err:
        StagedFile(tmp_path / "exist.png" / "x.png")
    assert err.value.filename == str(tmp_path / "exist.png")


def _not_regular(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link_to_fifo":
        os.mkfifo(tmp_path / "pipe")
        path.symlink_to(tmp_path / "pipe")
    else:  # a link to nothing
        path.symlink_to(tmp_path / "nowhere")
    return path


# ``issuer root --out /dev/null`` run as root replaced the machine's /dev/null with a regular
# file; so did ``wallet present --qr`` with a named pipe. Every output is staged here.
@pytest.mark.parametrize("kind", ["fifo", "link_to_fifo", "dangling_link"])
def test_what_is_not_a_regular_file_is_never_replaced(tmp_path: Path, kind: str) -> None:
    path = _not_regular(tmp_path, kind)
    before = os.lstat(path)
    with pytest.raises(UsageError) as caught:
        atomic_write(path, b"data")
    assert caught.value.code == "output_not_regular" and str(path) in caught.value.message["en"]
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"fifo": ["fifo"], "link_to_fifo": ["link_to_fifo", "pipe"],
         "dangling_link": ["dangling_link"]}[kind])  # no temporary left either


def test_a_link_to_a_regular_file_is_still_an_output(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"old")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    atomic_write(tmp_path / "link", b"new")
    assert (tmp_path / "link").read_bytes() == b"new"


def test_a_place_that_cannot_be_written_is_named_as_the_user_gave_it() -> None:
    """/proc takes no new files: the error names the path asked for, not our temporary one."""
    with pytest.raises(OSError) as caught:
        StagedFile("/proc/pasaporte-qr.png")
    assert caught.value.filename == "/proc/pasaporte-qr.png"


# -- the passphrase and the QR file name: the usage errors of credential.home ----------------


def _piped(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """A script feeding the passphrase through a pipe (no terminal), no variable set."""
    import io

    monkeypatch.delenv("PASAPORTE_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def _usage_code(monkeypatch: pytest.MonkeyPatch, piped: str, *, confirm: bool) -> str:
    from credential.errors import UsageError
    from credential.home import read_passphrase

    _piped(monkeypatch, piped)
    with pytest.raises(UsageError) as caught:
        read_passphrase(confirm=confirm)
    assert caught.value.message["es"] != caught.value.message["en"]
    return caught.value.code


def test_a_passphrase_read_from_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    from credential.home import read_passphrase

    _piped(monkeypatch, "una frase larga\r\nuna frase larga\n")
    assert read_passphrase(confirm=True) == "una frase larga"
    _piped(monkeypatch, "corta\n")
    assert read_passphrase() == "corta"  # an existing one is only checked by unsealing


def test_a_passphrase_past_its_bound_is_refused_before_it_is_used(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A line from a pipe had no bound: 300 MB piped in (a file in the passphrase's place) took
    23 GB as the wallet tried its caps-lock and trimmed forms."""
    from credential.home import MAX_PASSPHRASE, MAX_PASSPHRASE_READ, read_passphrase

    reads: list[int] = []

    class Pipe:
        def isatty(self) -> bool:
            return False

        def readline(self, limit: int = -1) -> str:
            reads.append(limit)
            return "x" * (limit if limit >= 0 else 10_000_000)

    monkeypatch.delenv("PASAPORTE_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin", Pipe())
    assert _code(read_passphrase) == "passphrase_too_long"
    assert reads and 0 <= reads[0] <= MAX_PASSPHRASE_READ + 3  # never more read than that
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "y" * (MAX_PASSPHRASE_READ + 1))
    assert _code(read_passphrase) == "passphrase_too_long"
    # a new one has a tighter bound; one an earlier release let be chosen still opens its store
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "y" * (MAX_PASSPHRASE + 1))
    assert _code(lambda: read_passphrase(confirm=True)) == "passphrase_too_long"
    assert read_passphrase() == "y" * (MAX_PASSPHRASE + 1)
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    _piped(monkeypatch, "z" * MAX_PASSPHRASE_READ + "\r\n")
    assert read_passphrase() == "z" * MAX_PASSPHRASE_READ  # at the bound: taken


def _code(call: Callable[[], object]) -> str:
    from credential.errors import UsageError

    with pytest.raises(UsageError) as caught:
        call()
    return caught.value.code


def test_nothing_to_read_the_passphrase_from_is_passphrase_required(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert _usage_code(monkeypatch, "", confirm=False) == "passphrase_required"


def test_an_empty_passphrase_is_passphrase_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _usage_code(monkeypatch, "\n", confirm=False) == "passphrase_empty"
    assert _usage_code(monkeypatch, "\n", confirm=True) == "passphrase_empty"


def test_a_new_passphrase_too_short_is_passphrase_short(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _usage_code(monkeypatch, "corta\ncorta\n", confirm=True) == "passphrase_short"
    from credential.errors import UsageError
    from credential.home import read_passphrase

    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "corta")  # the variable is held to it too
    with pytest.raises(UsageError) as caught:
        read_passphrase(confirm=True)
    assert caught.value.code == "passphrase_short" and "8" in caught.value.message["en"]


def test_two_different_passphrases_are_passphrase_mismatch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert _usage_code(monkeypatch, "una frase larga\notra frase larga\n",
                       confirm=True) == "passphrase_mismatch"


def test_a_qr_file_must_be_named_png() -> None:
    from credential.errors import UsageError
    from credential.home import check_png_name

    check_png_name(None)
    check_png_name("codigo.PNG")
    for name in ("codigo.jpg", "codigo", "codigo.png.txt"):
        with pytest.raises(UsageError) as caught:
            check_png_name(name)
        assert caught.value.code == "qr_not_png" and name in caught.value.message["en"]


def test_a_passphrase_that_is_not_utf8_is_refused_by_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Latin-1 bytes in PASAPORTE_PASSPHRASE reach Python as surrogates, which the key
    derivation cannot take: every role refuses them by name, and never shows them."""
    from credential.errors import UsageError
    from credential.home import read_passphrase

    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "contrase\udcf1a larga")
    with pytest.raises(UsageError) as caught:
        read_passphrase()
    assert caught.value.code == "passphrase_not_utf8"
    assert "\udcf1" not in caught.value.message["es"] + caught.value.message["en"]


def test_a_new_passphrase_is_read_after_the_current_one_and_names_its_own_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``issuer|wallet|ledger passphrase``: the current one, then the new one twice, from one
    pipe; or each from its variable. Refusals name the variable that would have served."""
    from credential.errors import UsageError
    from credential.home import read_new_passphrase, read_passphrase

    monkeypatch.delenv("PASAPORTE_NEW_PASSPHRASE", raising=False)
    _piped(monkeypatch, "la frase actual\nla frase nueva\nla frase nueva\n")
    assert (read_passphrase(), read_new_passphrase()) == ("la frase actual", "la frase nueva")
    monkeypatch.setenv("PASAPORTE_NEW_PASSPHRASE", "otra frase nueva")
    _piped(monkeypatch, "")
    assert read_new_passphrase() == "otra frase nueva"
    for value, code in (("corta", "passphrase_short"), ("", "passphrase_env_empty")):
        monkeypatch.setenv("PASAPORTE_NEW_PASSPHRASE", value)
        with pytest.raises(UsageError) as caught:
            read_new_passphrase()
        assert caught.value.code == code
    assert "PASAPORTE_NEW_PASSPHRASE" in caught.value.message["es"]
    monkeypatch.delenv("PASAPORTE_NEW_PASSPHRASE")
    _piped(monkeypatch, "la frase nueva\n")  # asked twice, the pipe ends after once
    with pytest.raises(UsageError) as caught:
        read_new_passphrase()
    assert caught.value.code == "passphrase_repeat_missing"  # the repeat is what it lacks
    assert "two lines" in caught.value.message["en"]
    assert "set PASAPORTE_NEW_PASSPHRASE" in caught.value.message["en"]


def test_an_empty_variable_with_nothing_to_prompt_on_is_named_for_every_role(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``export PASAPORTE_PASSPHRASE=$PASS`` with ``PASS`` unset, in a service: named as set but
    empty, not "set PASAPORTE_PASSPHRASE"; with a line to read, it is as if unset."""
    from credential.errors import UsageError
    from credential.home import read_passphrase

    _piped(monkeypatch, "")
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "")
    with pytest.raises(UsageError) as caught:
        read_passphrase()
    assert caught.value.code == "passphrase_env_empty"
    assert "PASAPORTE_PASSPHRASE is set but empty" in caught.value.message["en"]
    _piped(monkeypatch, "una frase\n")
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "")
    assert read_passphrase() == "una frase"


@pytest.mark.parametrize(("home", "xdg"), [("", None), ("", "relative/data"), (None, None)])
def test_no_usable_home_is_said_in_both_languages(monkeypatch: pytest.MonkeyPatch,
                                                  home: str | None, xdg: str | None) -> None:
    """No HOME and no passwd entry (a bare container) was internal_error, English only; an
    empty HOME put the data in the folder the command ran in, as a relative XDG_DATA_HOME did
    (the XDG spec says to ignore one)."""
    monkeypatch.delenv("PASAPORTE_HOME", raising=False)
    for name, value in (("HOME", home), ("XDG_DATA_HOME", xdg)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if home is None:  # and no passwd entry either
        monkeypatch.setattr("pathlib.Path.home", lambda: (_ for _ in ()).throw(
            RuntimeError("Could not determine home directory.")))
    with pytest.raises(UsageError) as err:
        resolve_home("wallet")
    assert err.value.code == "home_unknown"
    assert "--home" in err.value.message["es"] and "--home" in err.value.message["en"]
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/datos")  # an absolute one is used as it is
    assert resolve_home("wallet") == Path("/srv/datos/pasaporte/wallet")


def test_may_replace_decides_of_a_file_found_now_and_one_appeared_meanwhile(tmp_path: Path) -> None:
    """The predicate is asked of what is there at the start and again of what appeared by the
    commit: an earlier code of ours is replaced (and can be put back), anything else stays."""
    ours = lambda found: found.read_bytes().startswith(b"OURS")  # noqa: E731
    target = tmp_path / "code.png"
    target.write_bytes(b"OURS-1")
    staged = StagedFile(target, may_replace=ours)
    staged.write(b"OURS-2")
    staged.commit()
    assert target.read_bytes() == b"OURS-2"
    staged.undo()
    assert target.read_bytes() == b"OURS-1"
    staged.discard()
    target.unlink()
    raced = StagedFile(target, may_replace=ours)
    raced.write(b"OURS-3")
    target.write_bytes(b"OURS-twice")  # the same shortcut clicked twice
    raced.commit()
    assert target.read_bytes() == b"OURS-3"
    raced.discard()
    target.unlink()
    other = StagedFile(target, may_replace=ours)
    other.write(b"OURS-4")
    target.write_bytes(b"a family photo")
    with pytest.raises(FileExistsError):
        other.commit()
    assert target.read_bytes() == b"a family photo"
    other.discard()
