"""The ``pasaporte wallet`` command group: the resident's side of the passport.

A thin click layer over ``wallet_cli.store``: it resolves the home, reads the passphrase
(``PASAPORTE_PASSPHRASE`` or a hidden prompt) and prints. Errors are ``credential.errors`` raised
by the store and printed bilingually, once, by ``pasaporte.cli.main``. Whatever a script needs
(the public key, a credential id, the presentation text) goes to stdout alone; messages for the
person go to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

import click

from credential.errors import MalformedInput, PasaporteError, as_usage
from credential.home import (
    StagedFile,
    check_png_name,
    read_passphrase,
    resolve_home,
)
from credential.keys import b64url
from credential.logproof import read_trust_files
from credential.passport import parse_nonce
from schemas import schema
from wallet_cli.store import MAX_IMPORT_BYTES, CredentialEntry, Wallet

__all__ = ["group"]


_home_option = click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Carpeta de la cartera / Wallet folder (default: $PASAPORTE_HOME or the XDG data dir).")

_FILE = click.Path(exists=True, dir_okay=False)  # read whole, bounded (read_bounded)
_STATES = {"valid": ("vigente", "valid"), "expired": ("vencido", "expired"),
           "not_yet_valid": ("aún no vigente", "not yet valid"),
           "revoked": ("revocado", "revoked"), "suspended": ("suspendido", "suspended"),
           "key_compromised": ("llave de la oficina comprometida: pida uno nuevo",
                               "office key compromised: ask for a new one")}
_STATUS = {state: f"{es} / {en}" for state, (es, en) in _STATES.items()}
_OUTCOME = {"imported": "Importado / Imported", "unchanged": "Ya estaba / Already in the wallet",
            "replaced": "Actualizado / Updated"}


def _home(home: Path | None) -> Path:
    return resolve_home("wallet", home)


def _say(text: str) -> None:
    click.echo(text, err=True)


@click.group()
def group() -> None:
    """Cartera del residente / The resident's wallet."""


@group.command()
@_home_option
def init(home: Path | None) -> None:
    """Crea la clave del titular / Create the holder key (sealed under a passphrase).

    Prints the holder public key (base64url) for the issuing office.
    """
    where = _home(home)
    Wallet.refuse_existing(where)  # before asking for a passphrase for nothing
    wallet = Wallet.create(where, read_passphrase(confirm=True))
    _say(f"Cartera creada en / Wallet created in {where}")
    click.echo(b64url(wallet.public_key))


@group.command()
@_home_option
def key(home: Path | None) -> None:
    """Muestra la clave pública del titular / Print the holder public key (base64url)."""
    click.echo(b64url(Wallet.open(_home(home)).public_key))


@group.command()
@click.option("--bundle", "bundles", multiple=True, required=True, type=_FILE,
              help="A city's trust bundle (repeatable).")
@click.option("--trust-root", "roots", multiple=True, required=True, type=_FILE,
              help="That city's root key file (repeatable).")
@click.option("--bundle-proof", "proofs", multiple=True, type=_FILE,
              help="Each bundle's proof of publication (ledger prove-bundle).")
@click.option("--log-key", "log_keys", multiple=True,
              help="A city ledger's verifier key: trust only bundles proven on it.")
@click.option("--witness-key", "witness_keys", multiple=True,
              help="A witness's verifier key: the proof's checkpoint must be cosigned by one.")
@_home_option
def trust(bundles: tuple[str, ...], roots: tuple[str, ...], proofs: tuple[str, ...],
          log_keys: tuple[str, ...], witness_keys: tuple[str, ...], home: Path | None) -> None:
    """Confía en paquetes de ciudades / Trust cities' bundles: names for codes, issuer checks.
    With --log-key, only bundles proven to be on the public ledger."""
    wallet = Wallet.open(_home(home))
    # A bad bundle, root or proof file is a mistake in what was given, as at a counter's
    # ``verify`` (exit 2), not a refusal of something the wallet holds.
    with as_usage(PasaporteError):
        kept = wallet.trust(*read_trust_files(bundles, roots, proofs, log_keys, witness_keys),
                            notice=lambda n: _say(n.diagnostics()))
    for line in kept:
        click.echo(line)


@group.command(name="import")
@click.argument("file", type=click.File("rb"))
@_home_option
def import_(file: BinaryIO, home: Path | None) -> None:
    """Guarda un pasaporte emitido / Store an issued passport (FILE, or - for stdin).

    Prints the credential id.
    """
    wallet = Wallet.open(_home(home))
    raw = file.read(MAX_IMPORT_BYTES + 1)
    if len(raw) > MAX_IMPORT_BYTES:
        # Before decoding: the read may have cut a character in half, and the file's size,
        # not its encoding, is what is wrong with it.
        raise MalformedInput("too_large")
    try:
        # "-sig": a file saved by Windows Notepad starts with a byte order mark, which is no
        # part of the passport's text.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedInput("wallet_import_unreadable", file=file.name,
                             reason="not UTF-8 text") from None
    result = wallet.import_text(text)
    _say(f"{_OUTCOME[result.outcome]}: {result.id}")
    click.echo(result.id)


def _table(entries: list[CredentialEntry]) -> str:
    headers = ("Folio / ID", "Emisor / Issuer", "Válido hasta / Valid until", "Estado / Status")
    rows = [(e.id, e.issuer, e.valid_until.isoformat(), _STATUS[e.status]) for e in entries]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [headers, tuple("-" * w for w in widths), *rows]]
    return "\n".join(lines)


@group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Salida JSON / JSON output.")
@_home_option
def list_(as_json: bool, home: Path | None) -> None:
    """Lista los pasaportes guardados / List the stored passports."""
    entries, problems = Wallet.open(_home(home)).entries()
    for problem in problems:
        _say(problem.diagnostics())
    if as_json:
        doc: list[dict[str, Any]] = [e.to_json() for e in entries]
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    elif entries:
        click.echo(_table(entries))
    elif not problems:
        _say("La cartera está vacía / The wallet is empty")
    if problems:  # a passport the resident cannot use is a failure, not an empty wallet
        raise click.exceptions.Exit(1)


def _shown_line(groups: tuple[str, ...]) -> str:
    halves = []
    for lang, word in (("es", "Se muestra"), ("en", "Shown")):
        parts = [f"{g.label[lang]} ({', '.join(f.label[lang] for f in g.fields)})"
                 for g in schema().groups if g.name in groups]
        halves.append(f"{word}: {'; '.join(parts)}")
    return " / ".join(halves)


@group.command(name="present")
@click.argument("credential_id")
@click.option("--for", "service", required=True, metavar="SERVICE",
              help="Servicio / Service (library, transit, clinic).")
@click.option("--disclose", metavar="CLAIM,…", multiple=True,
              help="Grupos o datos a mostrar en lugar de los del servicio / Groups or claims to "
                   "show instead of the service's defaults.")
@click.option("--audience", "counter", metavar="ID", default=None,
              help="Ventanilla / Counter id (audience becomes SERVICE:ID).")
@click.option("--nonce", default=None, metavar="N",
              help="Reto de la ventanilla / Counter challenge (text, or hex:…).")
@click.option("--qr", "qr_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="También escribe el QR en PNG / Also write the QR as PNG.")
@click.option("--terminal", is_flag=True,
              help="Dibuja el QR en la terminal (stderr) / Draw the QR in the terminal (stderr).")
@_home_option
def present(credential_id: str, service: str, disclose: tuple[str, ...], counter: str | None,
            nonce: str | None, qr_path: Path | None, terminal: bool, home: Path | None) -> None:
    """Genera el código para una ventanilla / Make the code to show at a counter.

    Prints the payload text (PU1:…) on stdout and nothing else.
    """
    check_png_name(qr_path)
    wallet = Wallet.open(_home(home))
    # Staged first: a place the image cannot go fails before the passphrase is asked for and
    # a presentation signed for nothing.
    staged = StagedFile(qr_path) if qr_path is not None else None
    try:
        _present(wallet, credential_id, service, disclose, counter, nonce, staged, terminal)
    finally:
        if staged is not None:
            staged.discard()


def _present(wallet: Wallet, credential_id: str, service: str, disclose: tuple[str, ...],
             counter: str | None, nonce: str | None, staged: StagedFile | None,
             terminal: bool) -> None:
    shown = wallet.present(credential_id, service=service, passphrase=read_passphrase,
                           disclose=disclose or None, counter=counter, nonce=parse_nonce(nonce))
    # What a claim name stands for is its whole group (the smallest unit the office signed):
    # say exactly what the counter will see, every time.
    _say(_shown_line(shown.groups))
    if shown.status != "valid":
        es, en = _STATES[shown.status]
        _say(PasaporteError("wallet_present_not_valid", status=en, status_es=es).diagnostics())
    if shown.missing:
        spec = schema().services[service]
        labels = [schema().group(g).label for g in shown.missing]
        _say(PasaporteError("wallet_present_missing", service=service,
                            service_es=spec.label["es"], service_en=spec.label["en"],
                            groups_es=", ".join(x["es"] for x in labels),
                            groups_en=", ".join(x["en"] for x in labels)).diagnostics())
    if staged is not None or terminal:
        from credential import qr  # image libraries load only when a QR is asked for

        if staged is not None:
            staged.write(qr.render_png(shown.text))
            staged.commit()
        if terminal:
            click.echo(qr.render_text(shown.text), err=True)
    click.echo(shown.text)
