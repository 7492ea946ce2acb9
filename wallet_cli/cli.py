"""The ``pasaporte wallet`` command group: the resident's side of the passport.

A thin click layer over ``wallet_cli.store``: it resolves the home, reads the passphrase
(``PASAPORTE_PASSPHRASE`` or a hidden prompt) and prints. Errors are ``credential.errors`` raised
by the store and printed bilingually, once, by ``pasaporte.cli.main``. Whatever a script needs
(the public key, a credential id, the presentation text) goes to stdout alone; messages for the
person go to stderr.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click

from credential import transport
from credential.errors import MalformedInput, PasaporteError, UsageError, as_usage
from credential.home import (
    MIN_PASSPHRASE,
    StagedFile,
    check_output,
    check_png_name,
    read_new_passphrase,
    read_passphrase,
    resolve_home,
)
from credential.keys import b64url
from credential.logproof import read_trust_files
from credential.passport import decode_bytes, parse_nonce
from credential.text import WIDE_BOMS, decode_file, escaped
from credential.times import COUNTER_FRESHNESS_S
from pasaporte.cli import BilingualGroup, can_show, json_text, proof_options
from schemas import schema
from wallet_cli.store import (
    CUT_SHORT,
    FOREIGN_CHARACTER,
    MAX_IMPORT_BYTES,
    MAX_IMPORT_CHARS,
    CredentialEntry,
    Wallet,
    shown_with,
)

__all__ = ["group"]


_home_option = click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Carpeta de la cartera (por omisión: $PASAPORTE_HOME o XDG) / Wallet folder (default: "
         "$PASAPORTE_HOME or XDG).")

_FILE = click.Path(exists=True, dir_okay=False)  # read whole, bounded (read_bounded)
# What to do about a passport a counter refuses, by why (the other states' labels say it):
# the clock is worth checking only for an expiry, and only a suspension can be lifted.
_ADVICE = {
    "expired": (" Pida uno nuevo a la oficina que lo emitió. (Si le parece un error, revise la "
                "fecha y hora de esta computadora: marca {now}.)",
                " Ask the office that issued it for a new one. (If this looks wrong, check this "
                "computer's date and time: it says {now}.)"),
    "suspended": (" Pregunte a la oficina que lo emitió por qué: una suspensión se puede "
                  "levantar.", " Ask the office that issued it why: a suspension can be lifted."),
    "revoked": (" Pregunte a la oficina que lo emitió por qué, o pida uno nuevo.",
                " Ask the office that issued it why, or for a new one."),
}
_STATES = {"valid": ("vigente", "valid"), "expired": ("vencido", "expired"),
           "not_yet_valid": ("aún no vigente", "not yet valid"),
           "revoked": ("revocado", "revoked"), "suspended": ("suspendido", "suspended"),
           "key_compromised": ("llave de la oficina comprometida: pida uno nuevo",
                               "office key compromised: ask for a new one"),
           "key_not_valid_at_issuance": ("la llave de la oficina no valía cuando lo firmó: "
                                         "pida uno nuevo",
                                         "the office key was not valid when it signed it: "
                                         "ask for a new one"),
           # Stored whole since import (its digest is checked), such a passport was damaged
           # before (or imported before the wallet kept digests): the office's own file, imported
           # again, mends the one; only a passport that never verified needs a new one.
           "signature_invalid": ("la firma de la oficina no se verifica: la copia guardada puede "
                                 "estar dañada; importe de nuevo el archivo que le dio la "
                                 "oficina, y si no basta, pida uno nuevo",
                                 "the office's signature does not verify: the stored copy may be "
                                 "damaged; import again the file the office gave you, and if "
                                 "that does not do, ask for a new one"),
           # Never imported so once the city was trusted (import refuses it): imported before.
           "key_unknown": ("la llave de la oficina que lo firmó no está en el paquete de "
                           "confianza de la ciudad que tiene esta cartera: confíe en el paquete "
                           "actual de la ciudad («pasaporte wallet trust»); si sigue así, no es "
                           "de la ciudad: pida uno a la oficina",
                           "the office key that signed it is not in the city's trust bundle "
                           "this wallet holds: trust the city's current bundle (`pasaporte "
                           "wallet trust`); if it stays so, it is not the city's: ask the "
                           "office for one")}
_STATUS = {state: f"{es} / {en}" for state, (es, en) in _STATES.items()}
_OUTCOME = {"imported": "Importado / Imported", "unchanged": "Ya estaba / Already in the wallet",
            "replaced": "Actualizado / Updated"}


def _home(home: Path | None) -> Path:
    return resolve_home("wallet", home)


def _say(text: str) -> None:
    click.echo(text, err=True)


def _local(timestamp: int) -> str:
    """A moment as this computer's clock shows it, in its own zone: in UTC, a Tijuana evening
    read as the next day, beside a passport's first day that is a day in the office's zone, and
    "check this computer's date" pointed at a clock that was right."""
    return datetime.fromtimestamp(timestamp, UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z")


@click.group(cls=BilingualGroup)
def group() -> None:
    """Cartera del residente / The resident's wallet."""


@group.command()
@_home_option
def init(home: Path | None) -> None:
    """Crea la llave del titular / Create the holder key.

    La llave queda sellada con una frase de acceso / Sealed under a passphrase.

    Muestra la llave pública del titular (base64url) para la oficina emisora / Prints the holder
    public key (base64url) for the issuing office.
    """
    where = _home(home)
    Wallet.refuse_existing(where)  # before asking for a passphrase for nothing
    passphrase = read_passphrase(confirm=True).strip()  # as ``Wallet.create`` keeps it
    if len(passphrase) < MIN_PASSPHRASE:
        raise UsageError("passphrase_short", min=MIN_PASSPHRASE)
    wallet = Wallet.create(where, passphrase)
    _say(f"Cartera creada en / Wallet created in {where}")
    click.echo(b64url(wallet.public_key))


@group.command(name="passphrase")
@_home_option
def change_passphrase(home: Path | None) -> None:
    """Cambia la frase de acceso / Change the wallet passphrase.

    Pide la frase actual y luego la nueva dos veces ($PASAPORTE_PASSPHRASE y
    $PASAPORTE_NEW_PASSPHRASE para scripts; desde una tubería, una línea cada una: actual,
    nueva, nueva) / Asks for the current passphrase, then the new one twice
    ($PASAPORTE_PASSPHRASE and $PASAPORTE_NEW_PASSPHRASE for scripts; from a pipe, one line
    each: current, new, new).

    Los pasaportes se conservan; desde entonces la frase nueva abre esta cartera (las copias de
    su carpeta hechas antes se siguen abriendo con la anterior) / The passports stay; the new
    passphrase opens this wallet from then on (copies of its folder made before still open with
    the old one).
    """
    where = _home(home)
    wallet = Wallet.open(where)  # a missing or damaged wallet fails before any prompt
    wallet.change_passphrase(read_passphrase, read_new_passphrase,
                             notice=lambda n: _say(n.diagnostics()))
    click.echo(f"Frase de acceso cambiada / Passphrase changed: {where}")


@group.command()
@_home_option
def key(home: Path | None) -> None:
    """Muestra la llave pública del titular / Print the holder public key.

    En base64url / In base64url."""
    click.echo(b64url(Wallet.open(_home(home)).public_key))


@group.command()
@click.option("--bundle", "bundles", multiple=True, required=True, type=_FILE,
              help="Paquete de confianza de una ciudad (repetible) / A city's trust bundle "
                   "(repeatable).")
@click.option("--trust-root", "roots", multiple=True, required=True, type=_FILE,
              help="Archivo de la llave raíz de esa ciudad (repetible) / That city's root key "
                   "file (repeatable).")
@proof_options
@_home_option
def trust(bundles: tuple[str, ...], roots: tuple[str, ...], proofs: tuple[str, ...],
          log_keys: tuple[str, ...], witness_keys: tuple[str, ...], home: Path | None) -> None:
    """Confía en paquetes de ciudades / Trust cities' bundles.

    Dan los nombres de los códigos y permiten comprobar a los emisores. Con --log-key, solo
    paquetes con prueba de estar en el registro público / Names for codes, issuer checks.
    With --log-key, only bundles proven to be on the public ledger."""
    wallet = Wallet.open(_home(home))
    # A bad bundle, root or proof file is a mistake in what was given, as at a counter's
    # ``verify`` (exit 2), not a refusal of something the wallet holds.
    with as_usage(PasaporteError):
        kept = wallet.trust(*read_trust_files(bundles, roots, proofs, log_keys, witness_keys),
                            notice=lambda n: _say(n.diagnostics()), bundle_files=bundles,
                            root_files=roots)
    for line in kept:
        click.echo(line)


@group.command(name="import")
@click.argument("file", type=click.File("rb"))
@_home_option
def import_(file: BinaryIO, home: Path | None) -> None:
    """Guarda un pasaporte emitido / Store an issued passport.

    FILE contiene el texto del pasaporte (PU1:…), o es una imagen PNG o JPEG de su código QR,
    tal como lo entrega la oficina; con -, el texto se lee de la entrada estándar (pegado).
    Muestra el folio del pasaporte / FILE holds the passport's text (PU1:…), or is a PNG or
    JPEG image of its QR code, as the office hands it out; with -, the text is read from
    standard input (pasted). Prints the credential id.
    """
    wallet = Wallet.open(_home(home))
    name = str(getattr(file, "name", "-"))
    if name in ("<stdin>", "-"):  # "<stdin> is not a passport's file" named no file anyone gave
        name = _STDIN
        raw = _pasted(file) if sys.stdin.isatty() else file.read(MAX_IMPORT_BYTES + 1)
    else:
        raw = file.read(MAX_IMPORT_BYTES + 1)
    if raw.startswith(_IMAGES):
        result = wallet.import_text(_qr_text(raw, file), source=name)
    else:
        result = wallet.import_text(_text(raw, name), source=name)
    _say(f"{_OUTCOME[result.outcome]}: {result.id}")
    status = wallet.status_of(result.id)
    if status not in ("valid", "not_yet_valid"):
        # the old file of a renewal from an e-mail: "Imported" alone, and the resident found
        # out in the queue what the wallet already knew
        es, en = _STATES[status]
        _say(PasaporteError("wallet_import_not_valid", status_es=es, status=en).diagnostics())
    click.echo(result.id)


_STDIN = "«-» (entrada estándar / standard input)"


def _pasted(stream: BinaryIO) -> bytes:
    """What a resident pastes at the terminal, read up to the line that completes a passport's
    text (one line; a paste wrapped by a mail client goes on over several), an empty line after
    some text, or Ctrl-D. Read to the end, as a pipe is, the command waited after Enter with no
    word of Ctrl-D, and the resident took it for hung."""
    _say("Pegue el texto del pasaporte (PU1:…) y pulse Enter / Paste the passport's text "
         "(PU1:…) and press Enter")
    lines: list[bytes] = []
    size = 0
    while size <= MAX_IMPORT_BYTES:
        line = stream.readline(MAX_IMPORT_BYTES + 1 - size)
        if not line:
            break
        lines.append(line)
        size += len(line)
        text = b"".join(lines).decode("utf-8", "replace")
        if not line.strip():
            if text.strip():
                break
            continue
        try:
            # line breaks out, as the import takes them (a space is a base45 character)
            decode_bytes(transport.unpack(text.replace("\r", "").replace("\n", ""),
                                          max_chars=MAX_IMPORT_CHARS))
        except MalformedInput as exc:
            if exc.code in CUT_SHORT and exc.detail.get("reason") != FOREIGN_CHARACTER:
                continue  # not whole yet (wrapped): the next line may complete it
        break  # whole, or no passport's text: the import says which
    return b"".join(lines)


# What an image to import starts with: PNG, JPEG. Anything else is read as the passport's text.
_IMAGES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
_PDF = b"%PDF-"


def _qr_text(head: bytes, file: BinaryIO) -> str:
    """The text of the QR code in the image that starts with ``head``, read as a counter's
    ``verify --image`` reads one: never more than ``qr.MAX_FILE_BYTES`` of it, its pixels and
    structure bounded by ``qr.decode_image``, every failure a ``MalformedInput`` of its own."""
    from credential import qr  # image libraries load only when an image is given

    rest = file.read(qr.MAX_FILE_BYTES + 1 - len(head)) if len(head) > MAX_IMPORT_BYTES else b""
    return qr.decode_image(head + rest)


# Photos the wallet does not read (a phone's HEIC, a messenger's WebP, GIF, BMP): said as such
# before the size check, which took a photo for a passport's text far too long.
_OTHER_IMAGES = re.compile(rb"GIF8[79]a|BM|RIFF....WEBP|....ftyp(?:hei[cx]|mif1|msf1|avif)",
                           re.DOTALL)


def _text(raw: bytes, name: str) -> str:
    if raw.startswith(_PDF):  # an e-mailed document: what to import is inside it
        raise MalformedInput("wallet_import_unreadable", file=name,
                             reason="a PDF document: save the passport's QR code from it as "
                                    "an image (PNG or JPEG), or copy its text, and import that")
    if _OTHER_IMAGES.match(raw):
        raise MalformedInput("wallet_import_unreadable", file=name,
                             reason="an image in a format the wallet does not read (HEIC, "
                                    "WebP, GIF or BMP): save or export it as PNG or JPEG, and "
                                    "import that")
    if len(raw) > MAX_IMPORT_BYTES:
        # Before decoding: the read may have cut a character in half. A passport's text is
        # never this long: the resident picked another file (a document, an archive), and
        # "the code holds too much data" named neither it nor what to import instead.
        raise MalformedInput("wallet_import_unreadable", file=name,
                             reason="far too large for a passport's text (PU1:…), and no PNG "
                                    "or JPEG image of its QR code")
    try:
        # as Windows tools save it too: Notepad's "Unicode", PowerShell's ">"
        text = decode_file(raw)
        # A passport's text is ASCII: binary bytes that happen to open as a UTF-16 mark decode
        # as text of no use, which is no passport "not recognised" either.
        if raw.startswith(tuple(bom for bom, _ in WIDE_BOMS)) and not text.isascii():
            raise UnicodeDecodeError("utf-16", raw, 0, len(raw), "not a passport's text")
        return text
    except UnicodeDecodeError:
        raise MalformedInput("wallet_import_unreadable", file=name,
                             reason="neither a passport's text (PU1:…) nor a PNG or JPEG "
                                    "image of its QR code") from None


def _table(entries: list[CredentialEntry]) -> str:
    headers = ("Folio / ID", "Emisor / Issuer", "Válido hasta / Valid until", "Estado / Status")
    # escaped: a passport imported before the wallet refused a crafted city code may hold one
    rows = [(e.id, escaped(e.issuer), e.valid_until.isoformat(), _STATUS[e.status])
            for e in entries]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [headers, tuple("-" * w for w in widths), *rows]]
    return "\n".join(lines)


@group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Salida JSON / JSON output.")
@_home_option
def list_(as_json: bool, home: Path | None) -> None:
    """Lista los pasaportes guardados / List the stored passports."""
    wallet = Wallet.open(_home(home))
    entries, problems = wallet.entries()
    for problem in problems:
        _say(problem.diagnostics())
    for damaged in wallet.trust_problems():  # said, not failed: the passports are all there
        _say(damaged.diagnostics())
    if as_json:
        doc: list[dict[str, Any]] = [e.to_json() for e in entries]
        click.echo(json_text(doc, indent=2))
    elif entries:
        click.echo(_table(entries))
    elif not problems:
        _say("La cartera está vacía / The wallet is empty")
    if problems:  # a passport the resident cannot use is a failure, not an empty wallet
        raise click.exceptions.Exit(1)


def _shown_line(groups: tuple[str, ...]) -> str:
    halves = []
    plural = len(groups) > 1  # "Se muestran: Residencia (…); Biblioteca (…)"
    for lang, word in (("es", "Se muestran" if plural else "Se muestra"), ("en", "Shown")):
        parts = [f"{g.label[lang]} ({', '.join(f.label[lang] for f in g.fields)})"
                 for g in schema().groups if g.name in groups]
        halves.append(f"{word}: {'; '.join(parts)}")
    return " / ".join(halves)


@group.command(name="present")
@click.argument("credential_id")
@click.option("--for", "service", required=True, metavar="SERVICE",
              help="Servicio: library, transit o clinic / Service: library, transit or clinic.")
@click.option("--disclose", metavar="CLAIM,…", multiple=True,
              help="Grupos o datos a mostrar en lugar de los del servicio, por su nombre o su "
                   "etiqueta en español o inglés (un dato se muestra con todo su grupo) / Groups "
                   "or claims to show instead of the service's defaults, by name or Spanish or "
                   "English label (a claim is shown with its whole group).")
@click.option("--audience", "counter", metavar="ID", default=None,
              help="Id de la ventanilla (el destinatario queda SERVICE:ID) / Counter id "
                   "(audience becomes SERVICE:ID).")
@click.option("--nonce", default=None, metavar="N",
              help="Reto de la ventanilla (texto, o hex:…) / Counter challenge (text, or "
                   "hex:…).")
@click.option("--qr", "qr_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="También escribe el QR en PNG, que vale unos 2 minutos (no para imprimir) / "
                   "Also write the QR as PNG, good for about 2 minutes (not for printing).")
@click.option("--terminal", is_flag=True,
              help="Dibuja el QR en la terminal (stderr) / Draw the QR in the terminal (stderr).")
@_home_option
def present(credential_id: str, service: str, disclose: tuple[str, ...], counter: str | None,
            nonce: str | None, qr_path: Path | None, terminal: bool, home: Path | None) -> None:
    """Genera el código para una ventanilla / Make the code to show at a counter.

    Escribe el texto del código (PU1:…) en la salida estándar, y nada más / Prints the payload
    text (PU1:…) on stdout and nothing else.
    """
    check_png_name(qr_path)
    if qr_path is not None:  # not among the wallet's own files (nor the place of one)
        check_output(str(qr_path), "--qr", _home(home))
    wallet = Wallet.open(_home(home))
    # Staged first: a place the image cannot go fails before the passphrase is asked for and
    # a presentation signed for nothing. Over an earlier code of this kind only: "--qr
    # pasaporte.png" replaced the passport image the office handed out (or a family photo).
    # One that appears there meanwhile (a shortcut clicked twice) is replaced the same way.
    staged = (StagedFile(qr_path, may_replace=_earlier_code)
              if qr_path is not None else None)
    try:
        _present(wallet, credential_id, service, disclose, counter, nonce, staged, terminal)
    finally:
        if staged is not None:
            staged.discard()


def _say_other_valid(wallet: Wallet, refused: str, service: str) -> None:
    """Name the valid passport of the same city this wallet holds beside a refused one (the
    renewal that replaced it): "ask the office for a new one" sent the resident for one they
    had."""
    entries, _ = wallet.entries()
    city = next((e.issuer for e in entries if e.id == refused), None)
    others = [e for e in entries if e.id != refused and e.issuer == city and e.status == "valid"]
    if others:
        other = max(others, key=lambda e: e.valid_until)
        _say(PasaporteError("wallet_present_other_valid", id=other.id,
                            valid_until=other.valid_until.isoformat(),
                            service=escaped(service[:40])).diagnostics())


def _earlier_code(path: Path) -> bool:
    """Whether ``path`` holds a code ``present --qr`` made (a presentation, good for minutes),
    which a new one may replace; refused (``wallet_qr_exists``) if it holds anything else."""
    if not os.path.lexists(path):
        return False
    from credential import qr
    from credential.passport import decode_text

    try:
        if decode_text(qr.decode_image(str(path))).kb is not None:
            return True
    except PasaporteError:
        pass
    raise UsageError("wallet_qr_exists", path=escaped(str(path)))


def _present(wallet: Wallet, credential_id: str, service: str, disclose: tuple[str, ...],
             counter: str | None, nonce: str | None, staged: StagedFile | None,
             terminal: bool) -> None:
    shown = wallet.present(credential_id, service=service, passphrase=read_passphrase,
                           disclose=disclose or None, counter=counter, nonce=parse_nonce(nonce))
    if shown.unlocked == "caps_lock":
        _say(PasaporteError("wallet_passphrase_caps_lock").diagnostics())
    for damaged in wallet.trust_problems():  # the status below may then miss a revocation
        _say(damaged.diagnostics())
    # What a claim name stands for is its whole group (the smallest unit the office signed):
    # say exactly what the counter will see, every time.
    _say(_shown_line(shown.groups))
    for name, group in shown_with(disclose) if disclose else ():  # none: the defaults
        whole = schema().group(group)
        _say(PasaporteError("wallet_disclose_whole_group", name=escaped(name[:80]),
                            group_es=whole.label["es"], group_en=whole.label["en"],
                            claims_es=", ".join(f.label["es"] for f in whole.fields),
                            claims_en=", ".join(f.label["en"] for f in whole.fields)
                            ).diagnostics())
    now = _local(int(datetime.now(UTC).timestamp()))
    if shown.clock_behind is not None:
        _say(PasaporteError("wallet_clock_behind", now=now,
                            known=_local(shown.clock_behind)).diagnostics())
    else:
        if shown.clock_differs is not None:
            # Within what counters allow an office's clock ahead: either clock may be wrong,
            # and a right one must not be set wrong (counters then refuse the code as future).
            _say(PasaporteError("wallet_clock_differs", now=now,
                                known=_local(shown.clock_differs)).diagnostics())
        if shown.status == "not_yet_valid":
            # Not a passport to replace, one to wait for: say from when (as a counter does).
            _say(PasaporteError("wallet_present_not_yet_valid", now=now,
                                valid_from=shown.valid_from.isoformat()).diagnostics())
        elif shown.status != "valid":
            es, en = _STATES[shown.status]
            advice_es, advice_en = _ADVICE.get(shown.status, ("", ""))
            _say(PasaporteError("wallet_present_not_valid", status=en, status_es=es,
                                advice_es=advice_es.format(now=now),
                                advice_en=advice_en.format(now=now)).diagnostics())
            _say_other_valid(wallet, shown.credential_id, service)
    if shown.ineligible:
        label = schema().services[shown.service].label
        _say(PasaporteError("wallet_present_not_eligible", service_es=label["es"],
                            service_en=label["en"]).diagnostics())
    if shown.missing:
        service = shown.service
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
            # made at home and printed for later, it was refused as "a possible screenshot"
            _say(PasaporteError("wallet_qr_short_lived", path=escaped(str(staged.target)),
                                seconds=COUNTER_FRESHNESS_S).diagnostics())
        if terminal:
            drawing = qr.render_text(shown.text)
            width = len(drawing.partition("\n")[0])
            columns = _columns()
            if not can_show(drawing, err=True):
                # A terminal whose character set has no block characters (a Latin-1 one) would
                # show each module as an escape, six characters of no code at all.
                _say(PasaporteError("wallet_qr_terminal_charset",
                                    encoding=getattr(sys.stderr, "encoding", None) or "?"
                                    ).diagnostics())
            elif columns is not None and width > columns:
                # A wrapped QR code cannot be scanned: say so rather than draw one.
                _say(PasaporteError("wallet_qr_too_wide", width=width,
                                    columns=columns).diagnostics())
            else:
                click.echo(drawing, err=True)
    click.echo(shown.text)


def _columns() -> int | None:
    """The width of the terminal the QR code is drawn on (standard error), or ``COLUMNS`` if
    set; None when it is no terminal (a file, a pipe: nothing wraps there)."""
    try:
        given = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        given = 0
    if given > 0:
        return given
    try:
        return os.get_terminal_size(2).columns or None
    except OSError:
        return None
