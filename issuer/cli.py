"""``pasaporte issuer``: the city office's admin commands (offline issuance, keys, bundles,
status changes). The logic lives in ``issuer.store``; this module only parses and prints."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import click

from credential import jsontext, qr, transport
from credential.bundle import MAX_BUNDLE, RootKey, parse_bundle
from credential.claims import parse_claims
from credential.errors import PasaporteError, StoreError, UsageError, as_usage
from credential.home import (
    PASSPHRASE_VARIABLE,
    StagedFile,
    atomic_write,
    check_output,
    check_outputs,
    check_png_name,
    read_new_passphrase,
    read_passphrase,
    resolve_home,
    uninterrupted,
)
from credential.keys import b64url, check_public_key, unb64url
from credential.passport import IssuedCredential
from credential.text import check_utf8, folded
from credential.times import check_timezone, parse_instant, rfc3339
from issuer import backup as backup_
from issuer import card, form, reseal
from issuer.bulk import (
    LEFT_OUT_DIR,
    MAX_BYTES,
    NEW_NAMES_MAX,
    REVOKED_DIR,
    BulkError,
    NewNames,
    expired_rows,
    issue_batch,
    listed,
    new_catalog_names,
    new_name_rows,
    parse_residents,
    repeated_rows,
)
from issuer.dates import Replaced, replaced_too_soon
from issuer.store import (
    LEDGER_TOKEN,
    PUBLISH_BATCH,
    REASONS,
    IssuerStore,
    check_claims_text,
    check_country,
    check_credential_id,
    check_kid,
    check_list_size,
    check_name,
)
from ledger.client import node_url
from pasaporte.cli import CANCELLED, BilingualCommand, BilingualGroup, json_text

T = TypeVar("T")
home_option = click.option("--home", type=click.Path(file_okay=False),
                           help="Carpeta de la oficina (por omisión: PASAPORTE_HOME o XDG) / "
                                "Office data directory (default: PASAPORTE_HOME or XDG).")
office_option = click.option("--office", help="Qué oficina emisora (solo si varias tienen llave "
                                              "activa) / Which of the city's offices (only when "
                                              "several have an active key).")
TOKEN_VARIABLE = "PASAPORTE_LEDGER_TOKEN"
json_option = click.option("--json", "as_json", is_flag=True, help="Salida JSON / JSON output.")


def _store(home: str | None) -> IssuerStore:
    return IssuerStore.open(resolve_home("issuer", home))


def _publish(store: IssuerStore, passphrase: str) -> None:
    """Send queued public-record entries if a ledger is configured; a ledger outage never undoes
    or blocks the office's own work: the entries stay queued for the next command."""
    if not store.ledger_configured():
        return
    try:
        sent = _send(store, passphrase)
    except PasaporteError as exc:
        click.echo(f"! {exc.diagnostics()}", err=True)
        return
    if sent:
        click.echo(f"Registro público: {sent} entrada(s) / Public ledger: {sent} entr(ies)",
                   err=True)


def _send(store: IssuerStore, passphrase: str) -> int:
    """``store.publish``, said when it is more than one batch (a bulk run's, or an office's
    backlog after an outage: minutes in silence read as a hang): the count first, and on a
    terminal how far it has gone."""
    waiting = store.queued()
    if waiting <= PUBLISH_BATCH:
        return store.publish(passphrase)
    click.echo(f"Enviando {waiting} entradas al registro público… / Sending {waiting} entries "
               "to the public ledger…", err=True)
    if not sys.stderr.isatty():
        return store.publish(passphrase)

    def progress(sent: int, total: int) -> None:
        click.echo(f"\r  {sent}/{total}", nl=False, err=True)

    try:
        return store.publish(passphrase, progress=progress, total=waiting)
    finally:
        click.echo("", err=True)  # the count's line ends, so what follows has its own


def _progressbar(items: Iterable[T], length: int, label: str
                 ) -> contextlib.AbstractContextManager[Iterable[T]]:
    return click.progressbar(items, length=length, label=label, file=sys.stderr)


@contextlib.contextmanager
def _phase(label: str) -> Iterator[Callable[[], None]]:
    """Say on stderr what slow work is under way when it happens inside one call the command
    cannot follow (a backup's copy and check): on a terminal the line counts the seconds, so a
    long copy is not taken for a hang; in a log it is written once. Yields ``stop``, for when
    a progress of its own takes over (a restore reading the ledger)."""
    tty = sys.stderr.isatty()
    click.echo(f"{label}…", err=True, nl=not tty)
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(1.0):
            seconds = int(time.monotonic() - started)
            click.echo(f"\r{label}… {seconds} s", err=True, nl=False)

    ticker = threading.Thread(target=tick, daemon=True) if tty else None

    def stop() -> None:
        if done.is_set():
            return
        done.set()
        if ticker is not None:
            ticker.join()
            click.echo("", err=True)  # end the line the ticker kept rewriting

    if ticker is not None:
        ticker.start()
    try:
        yield stop
    finally:
        stop()


def _default_code(city: str, country: str) -> str:
    """Country and the city's first three Latin letters (Mexicali, MX → MXMEX)."""
    letters = re.sub(r"[^A-Z]", "", unicodedata.normalize("NFKD", city).upper())
    if len(letters) < 3:  # 東京, or "Ai": a code of the country alone would not tell cities apart
        raise UsageError("usage_error",
                         reason_es="el nombre de la ciudad no da un código: indique --code",
                         reason_en="no code can be made from the city name: give --code")
    return f"{country.upper()}{letters[:3]}"


def _check_destination(path: str, option: str, home: str | None, *, keep: bool = False
                       ) -> None:
    # (the office's folder holds its store, sealed root key and every record)
    check_output(path, option, resolve_home("issuer", home), keep=keep,
                 inside="output_in_office_home")


def _check_destinations(outputs: Iterable[tuple[str, str | None]], home: str | None, *,
                        keep: bool = False) -> None:
    check_outputs(outputs, resolve_home("issuer", home), keep=keep,
                  inside="output_in_office_home")


@click.group(cls=BilingualGroup)
def group() -> None:
    """Oficina emisora / Issuing office."""


@group.command()
@click.option("--city", required=True,
              help="Nombre de la ciudad (p. ej. Mexicali) / The city's name (e.g. Mexicali).")
@click.option("--country", required=True,
              help="País, código ISO 3166-1 alfa-2 (MX, US) / Country, ISO 3166-1 alpha-2 code.")
@click.option("--office", required=True,
              help="Nombre de la oficina emisora, como lo muestran las ventanillas / The issuing "
                   "office's name, as counters show it.")
@click.option("--code", help="Código emisor de la ciudad, único entre las ciudades de una "
                             "ventanilla (por omisión: país + 3 letras) / The city's issuer code, "
                             "unique at a counter (default: CC+3).")
@click.option("--timezone", metavar="IANA",
              help="Zona horaria (America/Tijuana): la vigencia termina a medianoche local (por "
                   "omisión: UTC) / Time zone: validity ends at local midnight (default: UTC).")
@click.option("--list-size", type=int, metavar="N",
              help="Entradas por lista de estado, múltiplo de 8 (por omisión 131072; 1000000 "
                   "para un millón de residentes) / Entries per status list, a multiple of 8 "
                   "(default 131072; 1000000 for a million residents).")
@home_option
def init(city: str, country: str, office: str, code: str | None, timezone: str | None,
         list_size: int | None, home: str | None) -> None:
    """Crea la oficina / Create the office.

    Crea la llave raíz de la ciudad, la llave de la oficina y el almacén local / Create the city
    root key, the office key and the local store."""
    path = resolve_home("issuer", home)
    # before the passphrase is asked for, and before a code is made from the city's name
    city, office = check_name(city, "--city"), check_name(office, "--office")
    country = check_country(country)
    if timezone is not None:
        check_timezone(timezone)
    if list_size is not None:
        check_list_size(list_size)
    store = IssuerStore.create(path, city=city, country=country, office=office,
                               code=code or _default_code(city, country),
                               passphrase=read_passphrase(confirm=True), timezone=timezone,
                               list_size=list_size)
    info = store.info()
    click.echo(f"Oficina creada / Office created: {info.office}, {info.city} {info.country} "
               f"[{info.code}] en/in {path}")
    if info.timezone is None:
        click.echo(PasaporteError("issuer_timezone_utc").diagnostics(), err=True)


@group.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Archivo donde escribir la llave raíz pública (JSON) / Where to write the "
                   "public root key (JSON).")
@home_option
def root(out: str, home: str | None) -> None:
    """Exporta la llave raíz / Export the root key.

    Escribe la llave raíz pública de la ciudad para las ventanillas / Export the city root
    public key for counters."""
    _check_destination(out, "--out", home)
    atomic_write(out, _store(home).root().to_json().encode(), mode=0o644)
    click.echo(out)


@group.command("keys")
@json_option
@home_option
def keys_(as_json: bool, home: str | None) -> None:
    """Lista las llaves de la oficina / List the office keys.

    Cada una con su estado: active (activa), retired (retirada), expired (vencida),
    not_yet_valid (aún no vigente) o compromised (comprometida) / Each with its status: active,
    retired, expired, not_yet_valid or compromised."""
    rows = _store(home).office_keys()
    if as_json:
        # times in RFC 3339, as ``status --json``, ``ledger entries`` and the ledger's records
        shown = [{**r, **{k: None if r[k] is None else rfc3339(r[k])
                          for k in ("valid_from", "valid_until", "compromised_since")}}
                 for r in rows]
        click.echo(json_text(shown, indent=2))
        return
    for r in rows:
        state = f"{_KEY_STATES.get(r['status'], r['status'])} / {r['status']}"
        click.echo(f"{r['kid']}  {state:<27}  {r['office']}  {r['public_key']}")


# An office key's states as ``keys`` shows them (``--json`` keeps the codes alone).
_KEY_STATES = {"active": "activa", "retired": "retirada", "expired": "vencida",
               "not_yet_valid": "aún no vigente", "compromised": "comprometida"}


@group.command()
@click.option("--claims", "claims_file", type=click.File("rb"),
              help="Archivo JSON con los datos del residente (tests/examples/claims-*.json) / "
                   "The resident's claims JSON file.")
@click.option("--ask", is_flag=True,
              help="En vez de --claims: pregunta los datos uno por uno en la terminal, muestra "
                   "un resumen y pide confirmar (desde una tubería: una línea por pregunta, la "
                   "confirmación «s» y después la frase de acceso) / Instead of --claims: ask "
                   "for the claims one by one on the terminal, show a summary and ask to "
                   "confirm (from a pipe: one line per question, the \"s\" confirmation, then "
                   "the passphrase).")
@click.option("--holder-key", help="Llave de la cartera del residente (base64url) / The "
                                   "resident's wallet key (base64url).")
@click.option("--paper", is_flag=True, help="Pasaporte impreso, sin llave de titular / Paper "
                                            "credential: no holder key binding.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Archivo donde escribir el pasaporte (texto PU1:…) / Where to write the "
                   "credential (PU1:… text).")
@click.option("--qr", "qr_out", type=click.Path(dir_okay=False),
              help="También escribe el QR en PNG / Also write a QR PNG.")
@click.option("--card", "card_out", type=click.Path(dir_okay=False),
              help="Con --paper: también escribe una tarjeta imprimible en PNG (el QR y sus "
                   "datos, tamaño credencial) / With --paper: also write a printable card PNG "
                   "(the QR and what it says, ID-1 size).")
@click.option("--overwrite", is_flag=True,
              help="Reemplaza --out/--qr/--card si ya existen (por omisión se conservan: "
                   "pueden ser de otro residente) / Replace existing --out/--qr/--card files "
                   "(kept by default: each may be a resident's passport).")
@click.option("--replaces", metavar="ID",
              help="Revoca en el mismo paso el pasaporte que éste sustituye (teléfono nuevo, "
                   "datos corregidos) / Revoke, in the same step, the passport this one "
                   "replaces (a new phone, corrected data).")
@click.option("--reason", metavar="TEXT", default=None,
              help="Motivo de esa revocación (por omisión: superseded; extraviado…) / Its "
                   "reason (default: superseded; device_lost…).")
@office_option
@home_option
def issue(claims_file: BinaryIO | None, ask: bool, holder_key: str | None, paper: bool, out: str,
          qr_out: str | None, card_out: str | None, overwrite: bool, replaces: str | None,
          reason: str | None, office: str | None, home: str | None) -> None:
    """Emite un pasaporte sin conexión / Issue one credential offline.

    Muestra el folio del pasaporte nuevo / Prints its id."""
    if ask == (claims_file is not None):
        raise UsageError("usage_error", reason_es="indique --claims o --ask, uno de los dos",
                         reason_en="give exactly one of --claims or --ask")
    if paper == bool(holder_key):
        raise UsageError("usage_error", reason_es="indique --holder-key o --paper, uno de los dos",
                         reason_en="give exactly one of --holder-key or --paper")
    if card_out is not None and not paper:  # a wallet's passport is shown by its phone
        raise UsageError("card_not_paper")
    if reason is not None and replaces is None:
        raise UsageError("usage_error",
                         reason_es="--reason va con --replaces (el motivo de revocar el anterior)",
                         reason_en="--reason goes with --replaces (why the old one is revoked)")
    replacing = None
    if replaces is not None:  # as printed, whatever case it was typed in
        replacing = (check_credential_id(replaces),
                     _reason_code(reason) if reason is not None else "superseded")
    check_png_name(qr_out)
    check_png_name(card_out, "--card")
    # An existing file there is most likely another resident's passport (a reused name): it is
    # kept unless --overwrite says otherwise. A run that fails puts a replaced file back anyway.
    # (--out may end in .png too)
    _check_destinations((("--out", out), ("--qr", qr_out), ("--card", card_out)), home,
                        keep=not overwrite)
    if claims_file is not None:  # else --ask, below
        raw = claims_file.read(64 * 1024 + 1)
        if len(raw) > 64 * 1024:
            raise UsageError("usage_error", reason_es="el archivo de datos pasa de 64 KB",
                             reason_en="the claims file is larger than 64 KB")
        try:
            doc = jsontext.loads(raw)
        except jsontext.DuplicateKey as exc:
            raise UsageError("claims_duplicate_key", key=exc.key) from None
        except ValueError:
            raise UsageError("claims_not_json") from None
        claims = parse_claims(doc)
    key = None if paper else _holder_key(holder_key or "")
    store = _store(home)
    office = store.resolve_office(office)  # before the passphrase is asked for
    # read now: inside the issuing transaction the store cannot be read from another connection
    card_office = card.office_of(store) if card_out is not None else None
    replaced = None
    if replacing is not None:  # (checked again when issuing, in the transaction): a mistyped
        # or finished id is said before the passphrase is asked for, and before any form
        old = store.credential(replacing[0])
        if old is None:
            raise StoreError("credential_unknown", credential_id=replacing[0])
        if old["status"] == "revoked":
            raise StoreError("replaces_revoked", credential_id=replacing[0],
                             reason=_reason_shown(old["reason"] or "unspecified"))
        replaced = Replaced(replacing[0], None if old["first_day"] is None
                            else date.fromisoformat(old["first_day"]),
                            date.fromisoformat(old["last_day"]))
        if claims_file is not None:  # (a form's dates: when issuing)
            early = replaced_too_soon(claims, replaced, form.office_today(store.info().timezone))
            if early is not None:
                raise early
    passphrase = None
    if ask:  # last of the checks: a resident's answers are not typed in for a mistyped --out
        if os.environ.get(PASSPHRASE_VARIABLE) or sys.stdin.isatty():
            # Asked (or read) and checked first: a wrong one, or a variable still holding the
            # passphrase before ``issuer passphrase``, would otherwise throw away a whole form.
            # From a pipe it stays after the form's lines, as scripts give it.
            passphrase = read_passphrase()
            store.office_signing_key(passphrase, office=office)
        claims = parse_claims(_ask_claims(store, replaced))
    check_claims_text(claims)
    if not ask:  # (the form's summary marked them, before its confirmation)
        # said with a way to stop only where one remains: the passphrase's prompt, next
        _tell_new_names(new_catalog_names([claims], store.catalogs()),
                        prompt_follows=passphrase is None)
    if passphrase is None:
        passphrase = read_passphrase()
    # The output files are staged first and written (on the disk, under a temporary name)
    # inside the issuing transaction: a place that cannot be written (a mistyped folder, a full
    # disk, a file another user owns) means nothing is issued, rather than a credential on the
    # record that nobody holds. They are put in place only once the record is committed: a
    # crash (SIGKILL, a power cut) before that left a passport at --out that counters accept
    # and the office could not revoke, its status index given again to the next resident.
    # From the commit to the files in place and the id printed, an interrupt waits.
    outputs: list[StagedFile] = []
    with contextlib.ExitStack() as held:
        try:
            for path in (out, qr_out, card_out):
                if path:  # a file given the same name meanwhile (another clerk's) is kept
                    outputs.append(StagedFile(path, may_replace=None if overwrite
                                              else lambda _found: False))

            def deliver(cred: IssuedCredential) -> None:
                text = transport.pack(cred.to_cbor())
                outputs[0].write(text.encode() + b"\n")
                if qr_out:
                    outputs[1].write(qr.render_png(text))
                if card_office is not None:  # drawn from the very text written: they agree
                    outputs[-1].write(card.render_card(text, card_office, claims=claims))
                held.enter_context(uninterrupted())

            cred = store.issue(claims, holder_key=key, passphrase=passphrase,
                               before_commit=deliver, office=office, replaces=replacing)
            unplaced = _place(outputs, cred.credential_id)
        finally:
            for staged in outputs:
                staged.discard()
        # Said before an interrupt held back is acted on: what was recorded, and where a file
        # that could not go in place is, are the clerk's to know whatever follows.
        try:
            click.echo(cred.credential_id)  # stdout: the new id alone, for scripts
        except OSError as exc:
            # A full disk or /dev/full under stdout, after the commit: "nothing was saved"
            # (exit 1) had the clerk or a script issue again, and two passports stood for one
            # resident. Said on stderr as what it is; the issuance's own exit status stands.
            click.echo(PasaporteError("issuer_issued_not_printed", credential_id=cred.credential_id,
                                      out=str(out), reason=exc.strerror or type(exc).__name__
                                      ).diagnostics(), err=True)
        if replacing is not None:
            click.echo(f"{replacing[0]}: {_STATUS_LABELS['revoked']} "
                       f"({_reason_shown(replacing[1])})", err=True)
        if unplaced is not None:
            click.echo(unplaced.diagnostics(), err=True)
    _publish(store, passphrase)
    if unplaced is not None:
        raise click.exceptions.Exit(1)


def _place(outputs: list[StagedFile], credential_id: str) -> StoreError | None:
    """Put an issued credential's files in place. It is on the record already: each file that
    cannot go where it was meant (a file there another user owns) is left where it was
    written, under its temporary name, the others put in place all the same (a card cannot be
    drawn again without the claims), and the refusal naming each returned, to be said once the
    rest of the issuance (its id, a replaced passport's revocation) is."""
    failed: list[str] = []
    for staged in outputs:
        try:
            staged.commit()
        except OSError as exc:
            failed.append(f"{staged.target} ({exc.strerror or exc}) → {staged.keep()}")
    if not failed:
        return None
    return StoreError("issued_file_not_placed", credential_id=credential_id,
                      files="; ".join(failed))


def _ask_claims(store: IssuerStore, replaces: Replaced | None) -> dict[str, Any]:
    """``issue --ask``: the claims from the clerk (``issuer.form``). Questions and summary go
    to stderr, as the passphrase's prompt does: stdout keeps the new id alone. Nothing to issue
    (cancelled, not confirmed) ends the command as Ctrl-C does, the form having said why."""
    first = True

    def ask(prompt: str) -> str | None:
        nonlocal first
        try:  # click.prompt: a line from a terminal or a pipe, Ctrl-C and Ctrl-D as Abort
            line: str = click.prompt(prompt, default="", show_default=False, prompt_suffix="",
                                     err=True)
        except click.exceptions.Abort:  # Ctrl-C, Ctrl-D, the end of a pipe
            click.echo("", err=True)
            return None
        if not sys.stdin.isatty():  # what a pipe gives is not echoed: end the prompt's line
            click.echo("", err=True)
        if first:  # answers saved by Notepad begin with a BOM: not part of the first answer
            first, line = False, line.removeprefix("\ufeff")
        return line

    # the names the office used, in the order it first did
    names = {which: list(by_code.values()) for which, by_code in store.catalogs().items()}
    doc = form.fill(ask, lambda line: click.echo(line, err=True),
                    today=form.office_today(store.info().timezone), catalogs=names,
                    again=sys.stdin.isatty(), replaces=replaces)
    if doc is None:
        raise click.exceptions.Exit(CANCELLED)
    return doc


def _holder_key(text: str) -> bytes:
    """The resident's wallet key as given to ``--holder-key``. A value that is no key is a
    mistake in how the command was typed (a usage error, like a missing one), found before the
    passphrase is asked for."""
    with as_usage(code="key_invalid"):
        return check_public_key(unb64url(text, length=32, what="--holder-key"),
                                "--holder-key")


@group.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Archivo donde escribir el paquete de confianza / Where to write the trust "
                   "bundle.")
@click.option("--proof", type=click.Path(dir_okay=False), default=None,
              help="También escribe su prueba de publicación, para «verify --bundle-proof» / "
                   "Also write its proof of publication, for `verify --bundle-proof`.")
@home_option
def bundle(out: str, proof: str | None, home: str | None) -> None:
    """Escribe el paquete de confianza / Write the trust bundle.

    El paquete de confianza vigente, firmado / The current signed trust bundle."""
    # the proof is written last, once the bundle is signed and published
    _check_destinations((("--out", out), ("--proof", proof)), home)
    store = _store(home)
    url = store.ledger_url()
    if proof is not None and url is None:  # before the passphrase is asked for
        raise UsageError("usage_error",
                         reason_es="--proof necesita un registro público («issuer ledger»)",
                         reason_en="--proof needs a public ledger ('issuer ledger')")
    passphrase = read_passphrase()
    staged = StagedFile(out, mode=0o644)  # as in issue: an unwritable --out publishes nothing
    try:
        made = store.bundle(passphrase, before_commit=staged.write)
        data, version = made.data, made.version
        # Put in place holding the store's lock, and never over a newer bundle of the city:
        # two clerks writing one file, the slower one's rename could land last and leave the
        # older version there, without the revocation the newer one carried.
        root = store.root()  # (read before the lock: the store reads take it too)
        with store.write_lock():
            newer = _newer_bundle_at(out, version, root)
            if newer is None:
                staged.commit()
    finally:
        staged.discard()
    if newer is not None:
        click.echo(PasaporteError("bundle_newer_in_place", out=out, have=newer,
                                  made=version).diagnostics(), err=True)
    click.echo(out)
    _publish(store, passphrase)
    if proof is not None and url is not None:
        from ledger.bundleproof import prove_bundle_remote, uncosigned_warning

        proved, _, cosigned = prove_bundle_remote(url, data)  # refused while it's still queued
        atomic_write(proof, proved.to_json(), mode=0o644)
        click.echo(proof)
        if not cosigned:
            click.echo(uncosigned_warning(), err=True)


def _newer_bundle_at(out: str, made: int, root: RootKey) -> int | None:
    """The version of the bundle of this city already at ``out`` if it is newer than ours,
    version ``made`` (another clerk's, made after ours and put in place first), else None."""
    try:
        with open(out, "rb") as f:
            there = f.read(MAX_BUNDLE + 1)
        have = parse_bundle(there, [root])
    except (OSError, PasaporteError):
        return None  # nothing there, or not this city's bundle: ours goes in place
    return have.version if have.version > made else None


def _status_command(name: str, new: str, help_text: str) -> None:
    @group.command(name, help=help_text)
    @click.argument("credential_id")
    @click.option("--reason", metavar="TEXT", default="unspecified",
                  help=f"Motivo: {', '.join(REASONS)} (o en español: extraviado…); otro "
                       "texto no se guarda / Reason: one of these codes; other text is not kept.")
    @home_option
    def cmd(credential_id: str, reason: str, home: str | None) -> None:
        # as printed, whatever case it was typed in; no id at all before the passphrase
        credential_id = check_credential_id(credential_id)
        reason = _reason_code(reason)
        store, passphrase = _store(home), read_passphrase()
        change = store.set_status(credential_id, new, reason, passphrase=passphrase)
        # a reinstatement's reason is seldom given: "vigente (unspecified)" said nothing
        quiet = change["status"] == "valid" and change["reason"] == "unspecified"
        said = "" if quiet else f" ({_reason_shown(change['reason'])})"
        click.echo(f"{credential_id}: {_STATUS_LABELS[change['status']]}{said}")
        _publish(store, passphrase)


# The codes as a clerk in a Mexican office says them (accents dropped before the look-up).
_SPANISH_REASONS = {
    "sin_especificar": "unspecified", "a_peticion": "holder_request",
    "solicitud": "holder_request", "fraude": "fraud", "error_de_datos": "data_error",
    "fallecido": "deceased", "fallecimiento": "deceased", "mudanza": "moved_away",
    "llave_comprometida": "key_compromise", "clave_comprometida": "key_compromise",
    # "extraviado" first, the word shown: "perdido" alone read as the passport being lost
    "reemplazado": "superseded", "sustituido": "superseded", "extraviado": "device_lost",
    "perdido": "device_lost", "dispositivo_perdido": "device_lost", "perdida": "device_lost",
    "robado": "device_lost", "robo": "device_lost", "defuncion": "deceased",
    "se_mudo": "moved_away", "cambio_de_domicilio": "moved_away",
}
# Each code's Spanish word, for the notice that lists them (the first of the words above)
_SPANISH_FOR = {code: word.replace("_", " ") for word, code in reversed(_SPANISH_REASONS.items())
                } | {"holder_request": "a petición"}


def _reason_shown(code: str) -> str:
    """A reason as a clerk reads it: its Spanish word, then the code kept on the record."""
    return f"{_SPANISH_FOR.get(code, code)} / {code}"


def _reason_code(text: str) -> str:
    """The reason code ``--reason`` names ("Device lost", "device-lost", or in Spanish,
    "extraviado"). Any other text is recorded as ``unspecified``, with a notice: the reason goes
    on the public ledger, and a free text there ("died 3 May", a name) would put personal data
    on a record that is never erased, so it is not kept anywhere."""
    code = "_".join(folded(check_utf8(text, "--reason")).replace("-", " ").split())
    code = _SPANISH_REASONS.get(code, code)
    if code in REASONS:
        return code
    click.echo(PasaporteError("reason_not_kept", codes=", ".join(REASONS),
                              codes_es=", ".join(_SPANISH_FOR.get(c, c) for c in REASONS)
                              ).diagnostics(), err=True)
    return "unspecified"


_status_command("revoke", "revoked", "Revoca un pasaporte (definitivo) / Revoke a credential "
                "(final).")
_status_command("suspend", "suspended", "Suspende un pasaporte (reversible) / Suspend a "
                "credential (reversible).")
_status_command("reinstate", "valid", "Levanta una suspensión / Lift a suspension.")

_STATUS_LABELS = {"valid": "vigente / valid", "revoked": "revocado / revoked",
                  "suspended": "suspendido / suspended"}
_VALIDITY_LABELS = {"expired": "vencido / expired",
                    "not_yet_valid": "aún no vigente / not yet valid"}


@group.command("status")
@click.argument("credential_id")
@json_option
@home_option
def status_(credential_id: str, as_json: bool, home: str | None) -> None:
    """Estado de un pasaporte / A credential's status.

    Para el residente que pregunta en la oficina / For a resident asking at the office."""
    credential_id = check_credential_id(credential_id)
    record = _store(home).credential(credential_id)
    if record is None:
        raise StoreError("credential_unknown", credential_id=credential_id)
    if as_json:
        click.echo(json_text(record, indent=2))
        return
    reason = f" ({_reason_shown(record['reason'])})" if record["status"] != "valid" else ""
    # What a counter answers first: a valid status of a passport whose validity is over (or
    # has not begun) is not what the resident asking why the bus refuses it needs to hear.
    heading = (_VALIDITY_LABELS[record["validity"]]
               if record["status"] == "valid" and record["validity"] in _VALIDITY_LABELS
               else _STATUS_LABELS[record["status"]])
    click.echo(f"{record['id']}: {heading}{reason}")
    since = (f"vigente desde / valid from: {record['first_day']}  "
             if record["first_day"] is not None else "")
    if record["validity"] == "unknown":  # issued by a release that did not keep it
        since = "vigente desde / valid from: ¿? (no consta / not on record)  "
    click.echo(f"  emitido / issued: {record['issued_at']}  {since}"
               f"vigente hasta / valid until: {record['last_day']}")
    click.echo(f"  {'papel / paper' if record['kind'] == 'paper' else 'cartera / wallet'}  "
               f"llave / key {record['kid']}  lista / list {record['status_list']}")
    if record["key_compromised_since"] is not None and record["status"] != "revoked" and (
            record["issued_at"] >= record["key_compromised_since"]):  # both RFC 3339 UTC
        click.echo("  " + PasaporteError("credential_key_compromised", kid=record["kid"],
                                         since=record["key_compromised_since"],
                                         credential_id=record["id"]).diagnostics())


@group.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Archivo nuevo para la copia de seguridad / The new backup file to write.")
@home_option
def backup(out: Path, home: str | None) -> None:
    """Copia de seguridad / Back up the office.

    Una copia coherente del almacén de la oficina (las llaves siguen selladas), hecha mientras
    la oficina sigue trabajando / A consistent backup of the office store (keys stay sealed),
    taken while the office keeps working."""
    _check_destination(str(out), "--out", home)  # an existing file: refused by take(), whole
    store, passphrase = _store(home), read_passphrase()
    # seconds on a large store: every row is read to sign the copy and read again to check it
    with _phase("Copiando y comprobando / Copying and checking"):
        count = backup_.take(store, out, passphrase)
    click.echo(f"Copia de seguridad / Backup: {out} ({count} pasaportes / passports)")


@group.command()
@click.option("--from", "source", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Archivo de la copia de seguridad / The backup file to restore.")
@click.option("--no-ledger", is_flag=True,
              help="No lee el registro público que nombra la copia (dejó de funcionar) / Do not "
                   "read the public ledger the backup names (it is down for good).")
@home_option
def restore(source: Path, no_ledger: bool, home: str | None) -> None:
    """Restaura una copia / Restore a backup.

    Crea una carpeta de oficina nueva a partir de una copia de seguridad (nunca encima de una
    que ya existe) / Make a new office home from a backup (never over an existing one).

    Lo que la oficina firmó después de la copia no consta en ella, así que la llave de entonces
    queda comprometida desde la hora de la copia (a esos residentes se les emite de nuevo) y una
    llave nueva toma su lugar. Los cambios de estado hechos después de la copia se leen de nuevo
    del registro público que nombra la copia / What the office signed after the backup is
    unknown to the copy, so the key of that time is marked compromised from the backup's time
    (those residents are issued again) and a new key takes over. Status changes made after the
    backup are read back from the public ledger the backup names."""
    where = resolve_home("issuer", home)
    if (where / "issuer.db").exists():  # said before the passphrase and the copying
        raise StoreError("issuer_exists", home=str(where))
    passphrase = read_passphrase()

    # The copy is checked whole (every row read) before the ledger is: seconds on a large store.
    counting: list[bool] = []
    with _phase("Copiando y comprobando la copia / Copying and checking the backup") as checked:
        def progress(read: int, total: int | None) -> None:
            checked()  # the ledger's own count takes over the line
            counting[:] = [True]
            of = f"/{total}" if total is not None else ""
            click.echo(f"\rRegistro público / Public ledger: {read}{of}", nl=False, err=True)

        try:
            done = backup_.restore(source, where, passphrase, ledger=not no_ledger,
                                   progress=progress)
        finally:
            if counting:  # the count's line ended, so what follows (or an error) has its own
                click.echo("", err=True)
    click.echo(f"Oficina restaurada / Office restored: {where} "
               f"({done.count} pasaportes / passports)")
    # the time each key is compromised since as the restored store keeps it: the backup's, or
    # an earlier one the lost office had marked (the public ledger's): said as the other, it
    # told the clerk that what the key signed in between still stood
    since = {r["kid"]: r["compromised_since"] for r in IssuerStore.open(where).office_keys()}
    for kid in done.retired:  # one per office that had an active key
        when = rfc3339(since[kid]) if since.get(kid) is not None else "?"
        click.echo(f"La llave {kid} queda comprometida desde {when}: lo que firmó desde entonces "
                   f"se rechaza; publique un paquete nuevo. / Key {kid} is marked "
                   f"compromised since {when}: what it signed from then on is refused; "
                   f"publish a new bundle.", err=True)
    if done.ledger is not None:
        click.echo(f"Del registro público / From the public ledger: {done.ledger.applied} "
                   f"cambio(s) de estado posteriores a la copia aplicados / status change(s) made "
                   f"after the backup applied; {len(done.ledger.found)} entrada(s) en cola ya "
                   f"publicadas / queued entries already published.", err=True)
        if done.ledger.compromised:
            click.echo(f"Llaves marcadas comprometidas tras la copia / keys marked compromised "
                       f"after the backup: {', '.join(done.ledger.compromised)}", err=True)
        if done.ledger.lost:
            click.echo(f"Llaves creadas tras la copia, ahora comprometidas / keys made after the "
                       f"backup, now compromised: {', '.join(done.ledger.lost)}", err=True)
    else:
        click.echo(PasaporteError("issuer_restore_status_unread").diagnostics(), err=True)
    _publish(IssuerStore.open(where), passphrase)


@group.command("ledger")
@click.option("--url", required=True,
              callback=lambda _ctx, _param, value: node_url(value),  # before the passphrase
              help="Dirección del nodo del registro público de la ciudad, p. ej. "
                   "http://127.0.0.1:8470 / The city's ledger node, e.g. "
                   "http://127.0.0.1:8470.")
@click.option("--token",
              help="Ficha de escritura de «pasaporte ledger token add»; mejor en "
                   f"{TOKEN_VARIABLE} o al preguntarse (en la línea de órdenes la ve cualquier "
                   "usuario del equipo) / An append token from `pasaporte ledger token add`; "
                   f"better in {TOKEN_VARIABLE} or when asked (on the command line any user of "
                   "this machine can see it).")
@home_option
def ledger_(url: str, token: str | None, home: str | None) -> None:
    """Publica en el registro público / Publish to a ledger.

    Publica la constancia pública de esta oficina (llaves, emisiones, cambios de estado) en un
    registro público / Publish this office's public record (keys, issuances, status changes) to
    a ledger."""
    token = _ledger_token(token)
    store, passphrase = _store(home), read_passphrase()
    # a token the node refuses is refused here, before it is saved; a node that cannot be
    # asked now (the office works offline) is saved, with a warning
    unchecked = store.configure_ledger(url, token, passphrase)
    click.echo(f"Registro público / Public ledger: {url}")
    if unchecked is not None:
        click.echo(f"! {unchecked.diagnostics()}", err=True)
    _publish(store, passphrase)


def _ledger_token(given: str | None) -> str:
    """The append token: ``--token``, else ``TOKEN_VARIABLE``, else asked, hidden, on a
    terminal. Only on the command line was it in every local user's process list (``ps``) for
    as long as the command ran, the wait at the passphrase prompt included."""
    if given:
        return given
    if os.environ.get(TOKEN_VARIABLE):
        return os.environ[TOKEN_VARIABLE]
    if sys.stdin is not None and sys.stdin.isatty():
        try:  # a hidden prompt reads the terminal itself, strictly, whatever stdin's decoding
            answer: str = click.prompt("Ficha de escritura / Append token", hide_input=True,
                                       err=True, default="", show_default=False)
        except UnicodeDecodeError:
            raise UsageError("text_not_utf8", what="--token") from None
        if answer.strip():
            return answer.strip()
    raise UsageError("issuer_ledger_token_required", variable=TOKEN_VARIABLE)


@group.command()
@home_option
def publish(home: str | None) -> None:
    """Envía lo que quedó en cola / Send what is still queued.

    Envía al registro público las entradas que siguen en cola (tras una interrupción) / Send
    entries still queued for the ledger (after an outage)."""
    store = _store(home)
    sent = _send(store, read_passphrase())
    click.echo(f"{sent} entradas enviadas / entries sent; {store.queued()} en cola / queued")


@group.command("timezone")
@click.argument("zone", required=False)
@home_option
def timezone_(zone: str | None, home: str | None) -> None:
    """Zona horaria de la oficina / The office's time zone.

    Sin ZONA la muestra; con una (p. ej. America/Tijuana), los días de vigencia de lo que se
    emita desde ahora se cuentan en ella (lo ya emitido no cambia) / Without ZONE, shows it;
    with one (e.g. America/Tijuana), the validity days of what is issued from now on are
    counted in it (what was issued keeps its days)."""
    store = _store(home)
    if zone is None:
        current = store.info().timezone
        click.echo(current or "UTC")
        if current is None:
            click.echo(PasaporteError("issuer_timezone_utc").diagnostics(), err=True)
        return
    check_timezone(zone)  # before the passphrase is asked for
    before = store.set_timezone(zone, read_passphrase())
    click.echo(f"Zona horaria / Time zone: {before or 'UTC'} → {zone}")


@group.command("passphrase")
@home_option
def passphrase_(home: str | None) -> None:
    """Cambia la frase de acceso / Change the office passphrase.

    La frase que sella la llave raíz, cada llave de oficina y la ficha del registro público
    (para cuando un empleado deja la oficina) / The one that seals the root key, every office
    key and the ledger token (for a clerk who leaves).

    Pide la actual y luego la nueva dos veces (o PASAPORTE_PASSPHRASE y
    PASAPORTE_NEW_PASSPHRASE). Las copias de seguridad hechas antes conservan la frase anterior /
    Asks for the current one, then the new one twice (or PASAPORTE_PASSPHRASE and
    PASAPORTE_NEW_PASSPHRASE). Backups made before keep the old passphrase."""
    store = _store(home)
    current = read_passphrase(prompt="Frase actual / Current passphrase")
    # Every secret is opened before the new passphrase is asked for: a wrong current one is
    # refused at once, and one that opens only some of them changes nothing.
    with _phase("Comprobando la frase actual / Checking the current passphrase"):
        opened = reseal.open_all(store, current)
    new = read_new_passphrase(current)  # the same one refused before the work is announced
    count = len(opened.secrets)
    with _phase(f"Sellando de nuevo {count} secretos con la frase nueva / "
                f"Re-sealing {count} secrets under the new passphrase"):
        counts = reseal.reseal(store, opened, new)
    total, offices = sum(counts.values()), counts.get("office", 0)
    plural = "s" if offices != 1 else ""
    es, en = [f"{offices} llave{plural} de oficina"], [f"{offices} office key{plural}"]
    if counts.get(LEDGER_TOKEN):
        es.append("la ficha del registro público")
        en.append("the ledger token")
    click.echo(f"Frase de acceso cambiada: {total} secretos sellados de nuevo (la llave raíz, "
               f"{', '.join(es)}) / Passphrase changed: {total} secrets re-sealed (the root "
               f"key, {', '.join(en)})")
    click.echo(PasaporteError("issuer_passphrase_backups").diagnostics(), err=True)


@group.command()
@office_option
@home_option
def rotate(office: str | None, home: str | None) -> None:
    """Nueva llave de oficina / Start a new office key.

    Crea una llave nueva (y una lista de estado nueva) para una oficina (nómbrela con --office
    si la ciudad tiene varias); lo que firmó su llave anterior se sigue verificando, y las
    llaves de las demás oficinas siguen activas / Start a new office key (and status list) for
    one office (name it with --office in a city of several); its old key keeps verifying what
    it signed, other offices' keys stay active."""
    store = _store(home)
    offices = store.offices()
    if office is None and len(offices) > 1:
        # Not the one office with an active key, as ``issue`` takes: after another office's
        # key was compromised, that one was rotated, its healthy key retired, and the office
        # that needed a key still had none.
        raise UsageError("issuer_office_ambiguous", offices=", ".join(offices))
    office = store.resolve_office(office)
    passphrase = read_passphrase()
    kid = store.add_office_key(passphrase, office=office)
    click.echo(b64url(kid))
    if len(offices) > 1:
        click.echo(f"{office}: llave nueva / new key {b64url(kid)}", err=True)
    _publish(store, passphrase)


@group.group("office")
def office_() -> None:
    """Oficinas de la ciudad / The city's offices.

    Las oficinas emisoras de la ciudad (una llave raíz, un paquete) / The city's issuing offices
    (one root, one bundle)."""


@office_.command("add")
@click.option("--office", required=True,
              help="Nombre de la oficina nueva, como lo muestran las ventanillas / The new "
                   "office's name, as counters show it.")
@home_option
def office_add(office: str, home: str | None) -> None:
    """Nueva oficina emisora / A new issuing office.

    Una oficina emisora nueva de esta ciudad, con su propia llave y lista de estado bajo la
    llave raíz de la ciudad; muestra el id de su llave. Después publique un paquete nuevo / A
    new issuing office of this city: its own key and status list under the city's root key;
    prints its key id. Publish a new bundle afterwards."""
    office = check_name(office, "--office")  # before the passphrase is asked for
    store = _store(home)
    passphrase = read_passphrase()
    kid = store.add_office(passphrase, office)
    click.echo(b64url(kid))
    _publish(store, passphrase)


class _KidCommand(BilingualCommand):
    """A kid is base64url, and may begin with "-" (those made before kids were drawn not to:
    credential.keys.new_signing_key): an unknown option is the kid, and "-h…" is a kid too, so
    -h is not an option here. But "-h" alone is no kid (a kid has six characters): help, as in
    every other command, not "missing option --since"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, ["--help" if arg == "-h" else arg for arg in args])


@group.command(cls=_KidCommand,
               context_settings={"ignore_unknown_options": True, "help_option_names": ["--help"]})
@click.argument("kid")
@click.option("--since", required=True,
              help="Desde cuándo no es confiable, ISO-8601 con su zona (2026-12-01T08:00-08:00) "
                   "/ ISO-8601 time, with its zone, from which the key is untrusted.")
@home_option
def compromised(kid: str, since: str, home: str | None) -> None:
    """Marca una llave como comprometida / Mark a key compromised.

    Marca una llave de oficina como comprometida desde una hora en adelante (después publique
    un paquete nuevo). Si se marca otra vez, la hora solo puede cambiar a una anterior / Mark an
    office key compromised from a time on (publish a new bundle afterwards). Marked again, the
    time may only move earlier."""
    kid = b64url(check_kid(kid))  # before the passphrase is asked for
    when = parse_instant(since, "--since")
    now = int(time.time())
    if when > now:
        # A leak cannot begin later than now (2099 typed for 2025?): counters would accept
        # what the thief signs until then. Refused before the passphrase is asked for.
        raise UsageError("issuer_compromise_future", since=rfc3339(when), now=rfc3339(now))
    store, passphrase = _store(home), read_passphrase()
    recorded, changed = store.mark_compromised(kid, when, passphrase)
    if not changed:  # the time the key already had (``when``, or its first moment if earlier)
        click.echo(PasaporteError("issuer_compromise_unchanged", kid=kid,
                                  since=rfc3339(recorded)).diagnostics(), err=True)
    elif recorded != when:
        click.echo(PasaporteError("issuer_compromise_from_start", kid=kid, since=rfc3339(when),
                                  made=rfc3339(recorded)).diagnostics(), err=True)
    click.echo(f"{kid}: comprometida desde / compromised since {rfc3339(recorded)}")
    _publish(store, passphrase)


# A sheet with one column wrong in every row (dates saved as 01/12/1999) fails each row the same
# way: 100,000 identical lines buried the summary under 60 MB. Each error is shown on its first
# rows, then counted; past the first errors the rest are counted only.
_ROWS_PER_ERROR = 3
_ERRORS_SHOWN = 50


def _printed(folder: Path) -> int:
    """How many passports a bulk folder holds (``ID.txt``; none if it cannot be read)."""
    try:
        return sum(1 for p in folder.glob("*.txt") if not p.name.startswith("."))
    except OSError:
        return 0


def _refuse_rows(errors: list[BulkError]) -> None:
    if not errors:
        return
    same: dict[tuple[str, str, str], list[int]] = {}
    for e in errors:
        same.setdefault((e.code, e.message["es"], e.message["en"]), []).append(e.line)
    # Rows, not errors: one row can be refused for two reasons (expired, and a name new to a
    # catalogue), and the count is checked against the sheet.
    told: set[int] = set()
    for count, ((code, es, en), lines) in enumerate(same.items()):
        if count == _ERRORS_SHOWN:
            rest = len({e.line for e in errors} - told)
            click.echo(f"… y {rest} fila(s) más con otros errores / … and {rest} more row(s) "
                       "with other errors", err=True)
            break
        for line in lines[:_ROWS_PER_ERROR]:
            click.echo(f"línea/line {line}: [{code}] {es} / {en}", err=True)
        if len(lines) > _ROWS_PER_ERROR:
            more = len(lines) - _ROWS_PER_ERROR
            click.echo(f"  … y {more} fila(s) más con el mismo error (hasta la línea "
                       f"{lines[-1]}) / … and {more} more row(s) with the same error (up to "
                       f"line {lines[-1]})", err=True)
        told.update(lines)
    rows = len({e.line for e in errors})
    raise UsageError("usage_error", reason_es=f"{rows} fila(s) no válida(s); no se "
                     "emitió nada", reason_en=f"{rows} invalid row(s); nothing issued")


def _tell_new_names(added: NewNames, *, prompt_follows: bool = True) -> None:
    """Say which names an issuance adds to the catalogues: they are published in every bundle
    from then on, and no later bundle takes them back. "Stop now (Ctrl+C)" only where the
    passphrase's prompt follows: with it in the environment, the passport was on its way a
    fifth of a second later."""
    if added:
        asked = prompt_follows and not os.environ.get(PASSPHRASE_VARIABLE)
        code = "catalog_new_names" if asked else "catalog_new_names_added"
        click.echo(PasaporteError(code, names_es=added.said("es"),
                                  names_en=added.said("en")).diagnostics(), err=True)


@group.command()
@click.argument("csv_file", type=click.File("rb"))
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="Carpeta donde escribir un pasaporte impreso por residente / Where to "
                   "write one paper credential per resident.")
@click.option("--qr", "with_qr", is_flag=True,
              help="También escribe un QR en PNG, imprimible, para cada uno / Also write a "
                   "printable QR PNG for each.")
@click.option("--cards", "with_cards", is_flag=True,
              help="También escribe una tarjeta imprimible (ID.card.png: el QR y sus datos) "
                   "para cada uno / Also write a printable card (ID.card.png: the QR and what "
                   "it says) for each.")
@click.option("--new-names", "many_new_names", is_flag=True,
              help=f"Acepta más de {NEW_NAMES_MAX} nombres nuevos en un catálogo (ciudades, "
                   f"bibliotecas, redes de clínicas), que se publicarán en cada paquete de "
                   f"confianza / Accept more than {NEW_NAMES_MAX} new names in one catalogue "
                   f"(cities, library systems, clinic networks), to be published in every "
                   f"trust bundle.")
@office_option
@home_option
def bulk(csv_file: BinaryIO, out_dir: str, with_qr: bool, with_cards: bool,
         many_new_names: bool, office: str | None, home: str | None) -> None:
    """Emite pasaportes en papel desde un CSV / Issue paper credentials from a CSV.

    Emite uno por cada fila de un CSV de residentes (antes se revisan todas las filas) / Issue
    paper credentials for every row of a residents CSV (all rows checked first).

    Ejecutarla de nuevo con el mismo archivo retoma una emisión que quedó a medias; ninguna fila
    se emite dos veces / Running the same file again resumes a run that was cut short; no row is
    issued twice."""
    # The print folder, copied to a stick for the print shop, must not carry the store (its
    # sealed keys and every record) with it; nor may its files land among the store's.
    own = Path(os.path.realpath(resolve_home("issuer", home)))
    where = Path(os.path.realpath(out_dir))
    if where == own or own in where.parents:
        raise UsageError("output_in_office_home", option="--out-dir", path=out_dir,
                         home=str(own))
    data = csv_file.read(MAX_BYTES + 1)
    rows, errors = parse_residents(data, progress=_progressbar)
    store = _store(home)
    office = store.resolve_office(office)
    # Today where the office counts its days: a row already expired would stop the run midway
    # (the store refuses it), after the groups before it were issued. Found with the others,
    # the rows' own problems among them: told one kind at a time, a clerk fixed a row, ran the
    # sheet again, and only then heard of the resident it repeats.
    catalogs = store.catalogs()
    _refuse_rows(sorted(errors + expired_rows(rows, form.office_today(store.info().timezone))
                        + new_name_rows(rows, catalogs) + repeated_rows(rows),
                        key=lambda e: e.line))
    added = new_catalog_names((r.claims for r in rows), catalogs)
    crowded = added.crowded()
    if crowded is not None and not many_new_names:
        _, label, names = crowded
        raise UsageError("bulk_new_names_many", catalog_es=label["es"], catalog_en=label["en"],
                         count=len(names), max=NEW_NAMES_MAX, names_es=listed(names, "es"),
                         names_en=listed(names, "en"))
    _tell_new_names(added)
    passphrase = read_passphrase()
    folder = Path(out_dir)
    before = _printed(folder)
    try:
        outcome = issue_batch(store, rows, folder, passphrase=passphrase,
                              with_qr=with_qr, with_cards=with_cards, progress=_progressbar,
                              office=office)
    except KeyboardInterrupt:
        # Ctrl-C, SIGTERM, SIGHUP: "cancelled" alone told neither how many were issued nor
        # that the same command resumes (as a full disk's stop says)
        done = _printed(folder) - before
        if done > 0:
            with contextlib.suppress(OSError):  # a terminal gone (SIGHUP): nobody to tell
                click.echo(PasaporteError("bulk_cancelled_partway", count=done,
                                          folder=str(folder)).diagnostics(), err=True)
        raise
    except (PasaporteError, OSError) as exc:
        # A full disk mid-run (the store's, or the folder's as a group's files are written):
        # "nothing was saved" is true of the last group only. The groups before it are issued
        # and in the folder; a clerk who took it at its word and emptied the folder would lose
        # them (bulk_files_lost on the next run).
        done = _printed(folder) - before
        if done <= 0:
            raise
        cause = exc if isinstance(exc, PasaporteError) else StoreError(
            "file_error", path=exc.filename or str(folder),
            reason=exc.strerror or type(exc).__name__)
        raise StoreError("bulk_stopped", count=done, folder=str(folder), cause=cause.code,
                         reason_es=cause.message["es"], reason_en=cause.message["en"]) from exc
    if outcome.resumed:
        click.echo(f"{outcome.resumed} ya emitidos antes (mismos datos) / already issued "
                   f"earlier (same claims)", err=True)
    click.echo(f"{outcome.issued} pasaportes emitidos / passports issued → {folder}")
    if outcome.withdrawn:
        lines = ", ".join(f"{n} ({cid})" for n, cid in outcome.withdrawn[:5])
        click.echo(PasaporteError(
            "bulk_rows_withdrawn", count=len(outcome.withdrawn),
            lines=lines + (", …" if len(outcome.withdrawn) > 5 else ""),
            aside=str(folder / REVOKED_DIR)).diagnostics(), err=True)
    if outcome.left_out:
        shown = ", ".join(outcome.left_out[:5]) + (", …" if len(outcome.left_out) > 5 else "")
        click.echo(PasaporteError("bulk_rows_left_out", count=len(outcome.left_out), ids=shown,
                                  index=outcome.kept_index,
                                  aside=str(folder / LEFT_OUT_DIR)).diagnostics(), err=True)
    _publish(store, passphrase)
