"""Where each role keeps its data: ``--home DIR``, else ``PASAPORTE_HOME``, else the XDG data dir.

Also the one way to write a file atomically (temp file in the same directory, fsync, rename), so a
crash never leaves half a key, half a wallet or half a store behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

__all__ = ["CANCELLING_SIGNALS", "NEW_PASSPHRASE_VARIABLE", "PASSPHRASE_VARIABLE", "ROLE_FILES",
           "StagedFile", "atomic_write", "check_output", "check_outputs", "check_png_name",
           "fsync_path", "held_lock", "make_folders", "name_start", "read_bounded",
           "read_new_passphrase", "read_passphrase", "refuse_other_role", "resolve_home",
           "uninterrupted"]


def resolve_home(role: str, home: str | os.PathLike[str] | None = None) -> Path:
    """The data directory for ``role`` (``issuer``, ``wallet``, ``verifier``, ``ledger``)."""
    if home:
        return Path(home).expanduser()
    env = os.environ.get("PASAPORTE_HOME")
    if env:
        return Path(env).expanduser()
    # XDG Base Directory: a relative XDG_DATA_HOME is invalid and ignored (it would put the
    # data wherever the command happened to run); so is an empty or relative HOME.
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "pasaporte" / role
    given = os.environ.get("HOME")
    try:
        # (an empty HOME is taken by Python for "/": the data of every role at /.local/share)
        user_home = Path(given) if given is not None else Path.home()
    except RuntimeError:  # no HOME and no passwd entry: a bare container, a service account
        user_home = Path()
    if not user_home.is_absolute():
        from credential.errors import UsageError

        raise UsageError("home_unknown", role=role)
    return user_home / ".local" / "share" / "pasaporte" / role


# The file each role's home is known by, and what it is called (one folder, one role's data).
ROLE_FILES = {"wallet": "wallet.json", "issuer": "issuer.db", "ledger": "ledger.json"}
_ROLE_NAMES = {"wallet": ("una cartera", "a wallet"),
               "issuer": ("una oficina emisora", "an issuing office"),
               "ledger": ("un registro público", "a public ledger")}


def refuse_other_role(home: Path, role: str) -> None:
    """Refuse to make ``role``'s home in a folder another role's data already holds: one
    PASAPORTE_HOME exported for a clerk put a resident's wallet, passports with names and
    birth dates in clear, into the office's folder (which is to hold none); an office went
    into a wallet just as quietly."""
    for other, marker in ROLE_FILES.items():
        if other != role and os.path.lexists(home / marker):
            from credential.errors import UsageError

            (other_es, other_en), (role_es, role_en) = _ROLE_NAMES[other], _ROLE_NAMES[role]
            raise UsageError("home_of_other_role", home=str(home), other_es=other_es,
                             other_en=other_en, role_es=role_es, role_en=role_en)


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """A small file's bytes, never more than ``limit`` of them held: a larger file (a video given
    by mistake, a device) is a typed error, not an allocation."""
    from credential.errors import UsageError

    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UsageError("file_too_large", path=str(path), limit=limit // 1024)
    return data


def make_folders(path: Path) -> bool:
    """``path`` and its missing parents, each made owner-only (0700, whatever the umask: under
    ``umask 000`` a print folder open to every user let one swap the files written in it).
    Folders already there are left as they are (the operator's). Whether this call made
    ``path`` itself: not so if another process made it meanwhile."""
    made = False
    missing: list[Path] = []
    while not path.is_dir():
        if os.path.lexists(path):  # a file (or a dangling link) where a folder should be:
            # said as that, not as "File exists"
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process: theirs, as it is
            made = False
            continue
        os.chmod(folder, 0o700)  # mkdir's mode passes through the umask
        made = True
    return made


def _inode(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


_STEM_BYTES = 64  # of a staged file's name, in its temporary names


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, the file system of ``folder`` (or of its nearest
    existing parent) takes: 255 on every Linux one in use."""
    for place in (folder, *folder.parents):
        try:
            return os.pathconf(place, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


def check_output(path: str, option: str, home: Path, *, keep: bool = False,
                 inside: str = "output_in_home") -> None:
    """An output must name a file, checked before any work it is to hold. ``--out ""`` (the
    current folder) or a folder would fail only at the final rename, once that work was done
    and recorded. With ``keep``, an existing file is not replaced either (``output_exists``).
    Nor is one in the command's own data folder (``home``; refused as ``inside``): ``--out
    <home>/ledger.db`` replaced a city's whole public log with a small proof file, and
    ``<home>/issuer.db`` an office's store and its sealed root key, each saying all was well."""
    from credential.errors import UsageError

    target = Path(path)
    if not path.strip() or target.name in ("", ".", "..") or target.is_dir():
        raise UsageError("output_not_a_file", option=option, path=path)
    # realpath, not Path.resolve: a symlink loop is no RuntimeError ("unexpected error") here,
    # and is refused below as what it is (not a regular file)
    own, where = (Path(os.path.realpath(p)) for p in (home, target))
    if where.parent == own or own in where.parents:
        raise UsageError(inside, option=option, path=path, home=str(own))
    if os.path.lexists(target) and not target.is_file():
        # a device, a pipe, a socket (--out /dev/stdout, /dev/full), a link to none (or to
        # itself): the final rename would replace it with a regular file, as root even a
        # system's own /dev entries (``StagedFile`` refuses them too, once the work is done)
        raise UsageError("output_not_regular", path=path)
    if keep and (target.exists() or target.is_symlink()):
        raise UsageError("output_exists", option=option, path=path)


def check_outputs(outputs: Iterable[tuple[str, str | None]], home: Path, *, keep: bool = False,
                  inside: str = "output_in_home") -> None:
    """``check_output`` for each (option, path) given a path, and no two naming one file: the
    later file would replace the earlier one (a credential by its image, a bundle by its
    proof) and the command would still succeed."""
    from credential.errors import UsageError

    named: dict[Path, str] = {}
    for option, path in outputs:
        if path is None:
            continue
        check_output(path, option, home, keep=keep, inside=inside)
        first = named.setdefault(Path(os.path.realpath(path)), option)
        if first != option:
            raise UsageError("output_same_file", options=f"{first} / {option}", path=path)

def name_start(name: str) -> str:
    """The start of a file ``name`` for a temporary file beside it: a legal 250-character name
    plus mkstemp's additions would pass the file system's 255-byte limit, and a file that may
    be written could not be. Counted in the bytes the file system sees (a name typed on a
    Latin-1 terminal holds bytes that are not UTF-8, kept as surrogate escapes), cut between
    characters."""
    stem, size = "", 0
    for char in name:
        size += len(os.fsencode(char))
        if size > _STEM_BYTES:
            break
        stem += char
    return stem


class StagedFile:
    """A file written now under a temporary name beside ``path`` and put in place later
    (``commit``), or never (``discard``). Staging first means a place that cannot be written
    fails before the work that fills it (signing a credential, say) is done or recorded; and
    until ``discard``, a commit can be taken back (``undo``), the file it replaced restored.

    ``may_replace`` decides, of a file found at ``path`` (now, or appeared there by the
    commit), whether it is replaced (the default: always) or stays, the commit then failing
    with EEXIST."""

    def __init__(self, path: str | os.PathLike[str], mode: int = 0o600, *,
                 may_replace: Callable[[Path], bool] | None = None) -> None:
        from credential.errors import UsageError

        self.target, self.mode, self._may_replace = Path(path), mode, may_replace
        if os.path.lexists(self.target) and not self.target.is_file():
            # A device, a pipe, a socket, a link to one (/dev/null, /dev/stdout) or to nothing:
            # the final rename would put a regular file in its place, as root even a system's
            # own /dev entries. Every output goes through here, so no command can.
            raise UsageError("output_not_regular", path=str(self.target))
        if len(os.fsencode(self.target.name)) > _name_max(self.target.parent):
            # Found only at the final rename otherwise, once the work the file holds was done
            # and recorded (in a folder still to be made, nothing refuses the name earlier).
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(self.target))
        # A file there now that may be replaced is; otherwise none may be put there meanwhile.
        self._keep_existing = may_replace is not None and not (
            os.path.lexists(self.target) and may_replace(self.target))
        make_folders(self.target.parent)
        # Written through the descriptor mkstemp opened (O_EXCL, 0600), never reopened by
        # name: in a folder another user can write to, the name may be swapped meanwhile (for a
        # file of theirs, which would then hold the passport, or a symlink to one of root's).
        fd, tmp = self._sibling(".tmp")
        self.tmp: Path | None = tmp
        self._fd: int | None = fd
        self._inode = _inode(os.fstat(fd))
        self.committed = False
        self.previous: Path | None = None  # a hard link to the file the commit replaced

    @staticmethod
    def leftovers(name_pattern: str) -> re.Pattern[str]:
        """The hidden names given, while it is written (``.tmp``) and once in place to the file
        it replaced (``.prev``), to a file whose name matches ``name_pattern`` (a regular
        expression): a dot, the name, mkstemp's random part. A process killed mid-way leaves
        them behind; whoever owns the folder removes these, and only these."""
        return re.compile(rf"\.(?:{name_pattern})\.[a-z0-9_]+\.(?:tmp|prev)")

    def _sibling(self, suffix: str) -> tuple[int, Path]:
        stem = name_start(self.target.name)
        with self._as_target():
            fd, tmp = tempfile.mkstemp(dir=self.target.parent, prefix=f".{stem}.",
                                       suffix=suffix)
        return fd, Path(tmp)

    @contextlib.contextmanager
    def _as_target(self) -> Iterator[None]:
        # The temporary name is ours, not the user's: an error names the path they gave.
        try:
            yield
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, str(self.target)) from None

    def write(self, data: bytes) -> None:
        """The contents, on the disk (fsync) under the temporary name."""
        assert self.tmp is not None and self._fd is not None, "already written or discarded"
        fd, self._fd = self._fd, None
        try:
            with self._as_target():
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
                os.fchmod(fd, self.mode)
        finally:
            os.close(fd)

    def commit(self) -> None:
        """Put the written file in place: readers see the old file or the new, never a mix.
        A file that appeared at the target since it was checked (another clerk's, given the
        same name) stays, and this fails with EEXIST, unless ``may_replace`` says otherwise."""
        assert self.tmp is not None, "already committed or discarded"
        if _inode(os.lstat(self.tmp)) != self._inode:
            # not the file written: swapped by someone who can write to the folder
            raise PermissionError(errno.EPERM, "the temporary file was replaced by another",
                                  str(self.target))
        if self._keep_existing:
            try:
                self._link_in_place()
            except FileExistsError:
                assert self._may_replace is not None
                if not self._may_replace(self.target):
                    raise
                self._keep_existing = False
        if not self._keep_existing:
            if self.target.is_file() and not self.target.is_symlink():
                # Kept under a second name (no copy: a hard link) so that ``undo`` can put it
                # back. The random name is reserved by mkstemp, then freed for the link.
                fd, keep = self._sibling(".prev")
                os.close(fd)
                os.unlink(keep)
                try:
                    os.link(self.target, keep)
                except OSError:  # a file system without hard links: no way back, as before
                    pass
                else:
                    self.previous = keep
            os.replace(self.tmp, self.target)
        self.tmp, self.committed = None, True
        fsync_path(self.target.parent)

    def _link_in_place(self) -> None:
        """The written file at the target only if none is there (a hard link, which unlike a
        rename never replaces one), then its temporary name gone; where the file system has no
        hard links, a rename after a last look."""
        assert self.tmp is not None
        try:
            os.link(self.tmp, self.target)
        except FileExistsError:  # said of the target: the error named our temporary file
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST),
                                  str(self.target)) from None
        except OSError:
            if os.path.lexists(self.target):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST),
                                      str(self.target)) from None
            os.replace(self.tmp, self.target)
            return
        os.unlink(self.tmp)

    def undo(self) -> None:
        """Take a commit back (the work it belonged to failed): the file it replaced is back in
        place, or, if there was none, the path is empty again."""
        if not self.committed:
            return
        if self.previous is not None:
            os.replace(self.previous, self.target)
            self.previous = None
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.target)
        self.committed = False
        fsync_path(self.target.parent)

    def keep(self) -> Path:
        """Leave the written file under its temporary name (``discard`` no longer removes it),
        and return that name: the one copy of something already recorded."""
        assert self.tmp is not None, "already committed or discarded"
        kept, self.tmp = self.tmp, None
        return kept

    def discard(self) -> None:
        """Remove the temporary file, unless committed, and what a commit replaced: the last
        step, after which a commit is final."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for leftover in (self.tmp, self.previous):
            if leftover is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
        self.tmp = self.previous = None
        self.committed = False


# What cancels a command (Ctrl-C, SIGTERM, a closed terminal), held back by ``uninterrupted``.
CANCELLING_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """``CANCELLING_SIGNALS`` held back for the block, and acted on after it: for the moment
    between a store's commit and the files it names being put in place, where an interrupt
    would leave one without the other (a record whose file was taken back, the id never
    printed). Blocked in this thread (and inherited by processes it starts, through exec)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, CANCELLING_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def held_lock(path: Path, busy: Exception | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing), or on the folder
    ``path`` itself (no lock file left in it), for the ``with`` block: waiting for it, or,
    given ``busy``, raising that at once if another process holds it. The lock is the
    kernel's (flock), so a process that dies never leaves it held."""
    import fcntl

    fd = (os.open(path, os.O_RDONLY | os.O_DIRECTORY) if path.is_dir()
          else os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if busy is not None else 0))
        except BlockingIOError:
            assert busy is not None
            raise busy from None
        yield
    finally:
        os.close(fd)  # releases the lock


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix."""
    staged = StagedFile(path, mode)
    try:
        staged.write(data)
        staged.commit()
    finally:
        staged.discard()


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file, or a directory's entries (a rename in it), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


MIN_PASSPHRASE = 8  # characters, for a passphrase being chosen: it is all that guards the keys
# The most characters of a passphrase being chosen; and of one given for a store, from any
# source, ``MAX_PASSPHRASE_READ`` (an earlier release let one longer than the first be chosen,
# and its store must still open, if only to change it): a line read from a pipe had no bound
# (300 MB piped in took 23 GB as the wallet tried its caps-lock and trimmed forms).
MAX_PASSPHRASE = 1024
MAX_PASSPHRASE_READ = 64 * 1024


def _prompt(text: str, variable: str) -> str:
    """A hidden prompt on a terminal; from a pipe (a script feeding it), one line, with nothing
    to hide and so without getpass's "may be echoed" warning. With nothing to read at all (a
    service, cron), say how to give the passphrase instead of a bare "cancelled"."""
    import click  # only interactive use needs it; click's prompt also works under CliRunner

    from credential.errors import UsageError

    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        try:  # the hidden prompt reads the terminal itself, strictly: a Latin-1 one's bytes
            answer: str = click.prompt(text, hide_input=True, err=True, default="",
                                       show_default=False)
        except UnicodeDecodeError:
            raise UsageError("passphrase_not_utf8") from None
        return answer
    line = stdin.readline(MAX_PASSPHRASE_READ + 3) if stdin is not None else ""  # CR LF, + 1
    if not line:
        raise UsageError("passphrase_required", variable=variable)
    return line.rstrip("\r\n")


def check_png_name(path: str | os.PathLike[str] | None, option: str = "--qr") -> None:
    """For the ``--qr FILE`` options: a QR is written as PNG (lossless; a JPEG's artefacts cost
    a scanner its margin), so a name promising another format is refused rather than filled
    with PNG bytes."""
    from credential.errors import UsageError

    if path is not None and not os.fspath(path).lower().endswith(".png"):
        raise UsageError("qr_not_png", path=os.fspath(path), option=option)


def _check_utf8(passphrase: str) -> str:
    """The passphrase as the UTF-8 it was typed in (``as_utf8``: an ASCII locale hands good
    UTF-8 over as surrogates too). Bytes that are no UTF-8 (a variable set from a Latin-1 file,
    a terminal in another encoding) arrive as surrogates, which Argon2id's input cannot hold:
    refused by name, before anything is made or unsealed. Left to the key derivation they were
    an internal error quoting the passphrase's offending character and its position."""
    from credential.errors import UsageError
    from credential.text import as_utf8

    typed = as_utf8(passphrase)
    if typed is None:
        raise UsageError("passphrase_not_utf8")
    return typed


def _check_length(passphrase: str, *, chosen: bool) -> None:
    from credential.errors import UsageError

    bound = MAX_PASSPHRASE if chosen else MAX_PASSPHRASE_READ
    if len(passphrase) > bound:  # (a line cut at the bound is longer too)
        raise UsageError("passphrase_too_long", max=bound)


PASSPHRASE_VARIABLE = "PASAPORTE_PASSPHRASE"
# A passphrase being changed to (``issuer passphrase``, ``wallet passphrase``, ``ledger
# passphrase``), for scripts; the current one stays in ``PASSPHRASE_VARIABLE``.
NEW_PASSPHRASE_VARIABLE = "PASAPORTE_NEW_PASSPHRASE"


def read_passphrase(*, confirm: bool = False, variable: str = PASSPHRASE_VARIABLE,
                    prompt: str = "Frase de acceso / Passphrase") -> str:
    """The environment's ``variable`` if set and not empty (scripts, CI), else a hidden prompt on
    the terminal or a line of standard input, asked twice when ``confirm`` (a passphrase being
    chosen, then at least ``MIN_PASSPHRASE`` long). The one reader for every role."""
    from credential.errors import UsageError

    env = os.environ.get(variable)
    if env:
        env = _check_utf8(env)
        _check_length(env, chosen=confirm)
        if confirm and len(env) < MIN_PASSPHRASE:
            raise UsageError("passphrase_short", min=MIN_PASSPHRASE)
        return env
    try:
        first = _prompt(prompt, variable)
    except UsageError:
        if env == "":  # set and empty ("export PASAPORTE_PASSPHRASE=$PASS" with PASS unset):
            # named as such, not told to set a variable that is set
            raise UsageError("passphrase_env_empty", variable=variable) from None
        raise
    if not first:
        raise UsageError("passphrase_empty")
    first = _check_utf8(first)
    _check_length(first, chosen=confirm)
    if confirm:
        if len(first) < MIN_PASSPHRASE:
            raise UsageError("passphrase_short", min=MIN_PASSPHRASE)
        try:
            second = _prompt("Repítala / Repeat it", variable)
        except UsageError:  # a pipe that gave one line: the repeat is what it lacks
            raise UsageError("passphrase_repeat_missing", variable=variable) from None
        if _check_utf8(second) != first:
            raise UsageError("passphrase_mismatch")
    return first


def read_new_passphrase(current: str | None = None) -> str:
    """The passphrase keys are being sealed under anew: ``NEW_PASSPHRASE_VARIABLE``, or asked
    twice (after the current one, when both come from standard input). The ``current`` one
    again is ``passphrase_unchanged``: a change that shuts nobody out is no change."""
    from credential.errors import UsageError

    new = read_passphrase(confirm=True, variable=NEW_PASSPHRASE_VARIABLE,
                          prompt="Frase nueva / New passphrase")
    if new == current:
        raise UsageError("passphrase_unchanged")
    return new
