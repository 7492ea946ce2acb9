"""``pasaporte issuer ledger``: the node's address and token are tried before they are saved,
against a real ledger node on 127.0.0.1; and what the office prints when a node refuses."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from credential.claims import parse_claims
from credential.errors import LedgerError
from issuer.publish import check_access, post_entries, server_message
from issuer.store import PUBLISH_BATCH, Issuance, IssuerStore, _batch_key, outbox
from ledger.client import MESSAGE_MAX
from ledger.http import create_app
from ledger.store import LedgerStore
from tests.conftest import PASSPHRASE, Run
from tests.factory import EXAMPLES
from tests.issuer.conftest import after_notices, keys_made_on
from tests.ledger.helpers import commitment

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture
def node(homes: dict[str, Path], passphrase: str, run: Run) -> Iterator[tuple[str, str]]:
    """A ledger node serving in this process: its URL, and an append token it gave."""
    home = homes["ledger"]
    assert run("ledger", "init", "--origin", "ledger.mexicali.test/log",
               "--home", str(home))[0] == 0
    code, out, err = run("ledger", "token", "add", "oficina-centro", "--home", str(home))
    assert code == 0, err
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        server = make_server("127.0.0.1", 0, create_app(store=store), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}", out.strip().splitlines()[-1]
        finally:
            server.shutdown()
            thread.join()


def _issue(office: Path, tmp_path: Path, run: Run) -> tuple[int, str, str]:
    return run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"), "--paper",
               "--out", str(tmp_path / "c.cred"), "--home", str(office))


def test_a_token_the_ledger_refuses_is_not_saved(node: tuple[str, str], office: Path,
                                                 tmp_path: Path, run: Run) -> None:
    url, token = node
    code, _, err = run("issuer", "ledger", "--url", url, "--token", "lt_mistyped",
                       "--home", str(office))
    assert code == 1 and "[ledger_token_refused]" in err and "HTTP 401" in err
    assert "no acepta esta ficha" in err and "does not accept this token" in err
    assert IssuerStore.open(office).ledger_url() is None  # nothing saved
    code, out, err = _issue(office, tmp_path, run)
    assert code == 0 and out.strip() and "ledger" not in err  # no refusal after every change
    code, _, err = run("issuer", "ledger", "--url", url, "--token", token, "--home", str(office))
    assert code == 0 and "[ledger_unchecked]" not in err, err
    assert IssuerStore.open(office).pending() == []  # the key and the issuance, sent


def test_a_refused_token_leaves_the_saved_one_in_place(node: tuple[str, str], office: Path,
                                                       tmp_path: Path, run: Run) -> None:
    url, token = node
    assert run("issuer", "ledger", "--url", url, "--token", token, "--home", str(office))[0] == 0
    saved = IssuerStore.open(office).pending()
    code, _, err = run("issuer", "ledger", "--url", url, "--token", token + "x",
                       "--home", str(office))
    assert code == 1 and "[ledger_token_refused]" in err and "HTTP 401" in err, err
    assert IssuerStore.open(office).ledger_url() == url and saved == []
    code, _, err = _issue(office, tmp_path, run)
    assert code == 0 and "1 entr(ies)" in err  # published with the token saved before


def test_the_token_is_taken_from_the_environment_off_the_command_line(
        node: tuple[str, str], office: Path, run: Run,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On the command line the token is in every local user's process list (``ps``) while
    the command runs; PASAPORTE_LEDGER_TOKEN keeps it out. Neither, and no terminal to ask
    on: refused, naming the variable, before the passphrase is asked for."""
    url, token = node
    code, _, err = run("issuer", "ledger", "--url", url, "--home", str(office))
    assert code == 2 and "[issuer_ledger_token_required]" in err, err
    assert "PASAPORTE_LEDGER_TOKEN" in err and IssuerStore.open(office).ledger_url() is None
    monkeypatch.setenv("PASAPORTE_LEDGER_TOKEN", token)
    code, _, err = run("issuer", "ledger", "--url", url, "--home", str(office))
    assert code == 0 and "[ledger_unchecked]" not in err, err
    assert IssuerStore.open(office).ledger_url() == url and IssuerStore.open(office).pending() == []


def test_a_mirror_given_for_the_node_is_named_a_wrong_address(
        node: tuple[str, str], homes: dict[str, Path], office: Path, tmp_path: Path,
        run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mirror answers 403 ``ledger_is_mirror``: it was reported as a refused token, with
    "use the token that node printed", and the clerk made new tokens a mirror refuses too."""
    url, token = node
    log_key = run("ledger", "key", "--home", str(homes["ledger"]))[1].strip()
    copy = tmp_path / "mirror"
    assert run("ledger", "mirror", "--from", url, "--log-key", log_key, "--unwitnessed",
               "--home", str(copy))[0] == 0
    monkeypatch.setenv("PASAPORTE_LEDGER_TOKEN", token)
    with LedgerStore.open(copy) as store:
        server = make_server("127.0.0.1", 0, create_app(store=store), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            mirror_url = f"http://127.0.0.1:{server.server_port}"
            code, _, err = run("issuer", "ledger", "--url", mirror_url, "--home", str(office))
        finally:
            server.shutdown()
            thread.join()
    assert code == 1 and err.startswith("[issuer_ledger_is_mirror]"), err
    assert "is a mirror of the ledger, not its node" in err and url in err
    assert "[ledger_token_refused]" not in err and IssuerStore.open(office).ledger_url() is None
    assert run("issuer", "ledger", "--url", url, "--home", str(office))[0] == 0  # same token


def test_an_unreachable_ledger_is_saved_with_a_warning(office: Path, run: Run) -> None:
    """An office may be set up before its network is: the node cannot be asked, so the
    address is saved, and the clerk told in both languages."""
    code, out, err = run("issuer", "ledger", "--url", UNREACHABLE, "--token", "lt_any",
                         "--home", str(office))
    assert code == 0 and UNREACHABLE in out
    assert "[ledger_unchecked]" in err and "no se pudo comprobar" in err
    assert "could not be checked" in err
    assert IssuerStore.open(office).ledger_url() == UNREACHABLE


def test_a_refusal_after_a_change_shows_the_nodes_message_not_its_json(
        node: tuple[str, str], office: Path, tmp_path: Path, run: Run) -> None:
    """A token saved unchecked (by an older version) that the node refuses: the issuance
    stands (exit 0, the entries stay queued) and the node's message is shown in each language,
    not its raw JSON in both."""
    url, _ = node
    IssuerStore.open(office).configure_ledger(url, "lt_mistyped", PASSPHRASE, check=False)
    code, out, err = _issue(office, tmp_path, run)
    assert code == 0 and out.strip()
    spanish, english = after_notices(err).split(" / ")
    assert "[ledger_publish_refused]" in spanish and "HTTP 401" in spanish
    assert "Falta una ficha de escritura válida." in spanish and "append token" not in spanish
    assert "A valid append token is required." in english and "Falta" not in english
    assert '"code"' not in err and "\\u00e1" not in err
    assert len(IssuerStore.open(office).pending()) == 2


def test_a_node_message_is_bounded_and_printable() -> None:
    body = json.dumps({"code": "x", "message": {"es": "\x1b[31mrojo\n" + "é" * 1000,
                                                "en": "red"}}).encode()
    es, en = server_message(body)
    assert en == "red" and "\x1b" not in es and "\n" not in es
    assert es.startswith("[31mrojo é") and len(es) == MESSAGE_MAX and es.endswith("…")
    assert server_message(b"<html>Bad Gateway</html>") == ("<html>Bad Gateway</html>",) * 2
    assert server_message(b"") == ("—", "—")


@pytest.mark.parametrize("status,refused", [(401, True), (403, True), (404, False),
                                            (502, False)])
def test_only_a_refused_token_is_refused(monkeypatch: pytest.MonkeyPatch, status: int,
                                         refused: bool) -> None:
    """403 (a proxy or a node that knows the token but not this use of it) is a refusal too;
    any other answer is not a ledger's word on the token: saved, with a warning."""
    answer = json.dumps({"code": "c", "message": {"es": "no", "en": "no"}}).encode()
    monkeypatch.setattr("issuer.publish.client.post",
                        lambda *_args, **_kw: (status, "application/json", answer))
    if refused:
        with pytest.raises(LedgerError) as raised:
            check_access("http://ledger.test", "t")
        assert raised.value.code == "ledger_token_refused"
        assert f"HTTP {status}" in raised.value.message["en"]
    else:
        warning = check_access("http://ledger.test", "t")
        assert warning is not None and warning.code == "ledger_unchecked"
        assert f"HTTP {status}" in warning.message["es"]


@pytest.mark.parametrize("answer", [b"[]", b'"ok"', b"[" * 100_000],
                         ids=["a list", "a string", "nested too deep"])
def test_an_answer_that_is_not_a_ledgers_keeps_the_entries_queued(
        office: Path, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
        answer: bytes) -> None:
    """A 2xx that is no ledger's answer (the URL names some other JSON service): the change
    stands (exit 0), the entries stay queued and the clerk is told, never "unexpected error"."""
    monkeypatch.setattr("issuer.publish.client.post",
                        lambda *_args, **_kw: (200, "application/json", answer))
    IssuerStore.open(office).configure_ledger("http://ledger.test", "t", PASSPHRASE, check=False)
    code, out, err = _issue(office, tmp_path, run)
    assert code == 0 and out.strip(), err
    assert "[ledger_publish_unreachable]" in err and "internal_error" not in err
    assert len(IssuerStore.open(office).pending()) == 2  # the key and the issuance, still queued


def test_a_restored_office_does_not_reuse_the_lost_offices_batch_keys(
        node: tuple[str, str], office: Path, tmp_path: Path, run: Run) -> None:
    """A restored office numbers its outbox on from the backup, as the lost office did after
    it: a batch with the same ids had the same idempotency key, and the node refused it (422)
    at every try, the restored office's queue stuck behind it. Here the lost office's batches
    after the backup are every range the restore's first batch could take."""
    url, token = node
    assert run("issuer", "ledger", "--url", url, "--token", token, "--home", str(office))[0] == 0
    assert _issue(office, tmp_path, run)[0] == 0
    assert run("issuer", "backup", "--out", str(tmp_path / "o.bak"), "--home", str(office))[0] == 0
    with IssuerStore.open(office).engine.connect() as db:
        after = int(db.exec_driver_sql("SELECT max(id) FROM outbox").scalar_one()) + 1
    for count in range(1, 9):  # what the lost office published after the backup
        post_entries(url, token, [commitment(100 * count + j) for j in range(count)],
                     idempotency_key=f"outbox-{after}-{after + count - 1}")
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "o.bak"),
                       "--home", str(tmp_path / "restored"))
    assert code == 0 and "[ledger_publish_refused]" not in err, err
    restored = IssuerStore.open(tmp_path / "restored")
    assert restored.pending() == []  # its own entries are on the record
    assert run("issuer", "publish", "--home", str(tmp_path / "restored"))[0] == 0


def test_a_folder_put_back_from_a_snapshot_says_why_it_cannot_publish(
        node: tuple[str, str], office: Path, tmp_path: Path, run: Run) -> None:
    """A file-level copy of the office put back (not ``issuer restore``): its next batch has
    a key the node already took for another, and the clerk saw only the node's "idempotency key
    already used" at every publish, the queue stuck. Now: what happened and the way out."""
    url, token = node
    assert run("issuer", "ledger", "--url", url, "--token", token, "--home", str(office))[0] == 0
    assert _issue(office, tmp_path, run)[0] == 0
    with IssuerStore.open(office).engine.connect() as db:
        after = int(db.exec_driver_sql("SELECT max(id) FROM outbox").scalar_one()) + 1
    # what the office published after the snapshot was taken, under the keys it would reuse
    for count in range(1, 4):
        post_entries(url, token, [commitment(100 * count + j) for j in range(count)],
                     idempotency_key=f"outbox-{after}-{after + count - 1}")
    code, _, err = _issue(office, tmp_path / "next", run)
    assert code == 0, err  # the passport stands; its entries stay queued
    assert "[ledger_publish_store_behind]" in err and "issuer restore" in err, err
    assert "[ledger_publish_refused]" not in err
    code, _, err = run("issuer", "publish", "--home", str(office))
    assert code == 1 and "[ledger_publish_store_behind]" in err, err


def test_a_restored_office_skips_the_lists_of_keys_the_lost_one_made(
        node: tuple[str, str], office: Path, tmp_path: Path, run: Run) -> None:
    """The lost office rotated after the backup, and its new key issued on list 2 with no status
    change on the record: the restored office's new key took list 2 again."""
    url, token = node
    assert run("issuer", "ledger", "--url", url, "--token", token, "--home", str(office))[0] == 0
    assert _issue(office, tmp_path, run)[0] == 0
    assert run("issuer", "backup", "--out", str(tmp_path / "o.bak"), "--home", str(office))[0] == 0
    assert run("issuer", "rotate", "--home", str(office))[0] == 0
    assert _issue(office, tmp_path / "after", run)[0] == 0

    def lists(home: Path) -> dict[str, int]:
        code, out, err = run("issuer", "keys", "--json", "--home", str(home))
        assert code == 0, err
        return {k["kid"]: k["status_list"] for k in json.loads(out)}

    lost = lists(office)
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "o.bak"),
                       "--home", str(tmp_path / "restored"))
    assert code == 0, err
    restored = lists(tmp_path / "restored")
    new = set(restored) - set(lost)
    assert len(new) == 1 and restored[new.pop()] > max(lost.values()), (lost, restored)


def test_a_restore_says_the_compromise_time_it_keeps(
        node: tuple[str, str], office: Path, tmp_path: Path, run: Run) -> None:
    """The lost office had marked its key compromised since before the backup was taken: the
    restored store keeps that earlier time, and says it, not "from the backup's time" (which
    told the clerk that what the key signed in between still stood)."""
    url, token = node
    keys_made_on(office)  # (so that a compromise can be dated before today)
    assert run("issuer", "ledger", "--url", url, "--token", token, "--home", str(office))[0] == 0
    kid = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0]["kid"]
    assert run("issuer", "backup", "--out", str(tmp_path / "o.bak"), "--home", str(office))[0] == 0
    assert run("issuer", "compromised", kid, "--since", "2025-06-01T00:00:00Z",
               "--home", str(office))[0] == 0
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "o.bak"),
                       "--home", str(tmp_path / "restored"))
    assert code == 0, err
    assert f"Key {kid} is marked compromised since 2025-06-01T00:00:00Z" in err, err


def test_each_restore_keeps_the_epochs_before_it(node: tuple[str, str], office: Path,
                                                 tmp_path: Path, run: Run) -> None:
    """A second restore (from a backup of a restored office) replaced the first one's epoch:
    a batch queued at that backup, named with the first epoch by the office that queued it,
    went out under the plain key the office lost at the first restore had used, refused for
    good. Every epoch is kept, and each batch named by the one its first id falls in."""
    assert _batch_key("e1:3,e2:9", 8, 8) == "outbox-e1-8-8"
    assert _batch_key("e1:3,e2:9", 9, 11) == "outbox-e2-9-11"
    assert _batch_key("e1:3,e2:9", 2, 2) == "outbox-2-2"  # queued before any restore
    assert _batch_key(None, 5, 6) == "outbox-5-6"
    url, token = node
    assert run("issuer", "ledger", "--url", url, "--token", token, "--home", str(office))[0] == 0
    homes = [office, tmp_path / "r1", tmp_path / "r2"]
    for made, restored in itertools.pairwise(homes):
        backup = tmp_path / f"{restored.name}.bak"
        assert run("issuer", "backup", "--out", str(backup), "--home", str(made))[0] == 0
        code, _, err = run("issuer", "restore", "--from", str(backup), "--home", str(restored))
        assert code == 0 and "[ledger_publish_refused]" not in err, err
    with IssuerStore.open(homes[-1]).engine.connect() as db:
        epochs = db.exec_driver_sql("SELECT v FROM meta WHERE k = 'outbox_epoch'").scalar_one()
    assert len(epochs.split(",")) == 2, epochs
    assert IssuerStore.open(homes[-1]).pending() == []


def test_a_backlog_of_several_batches_is_said_and_counted(node: tuple[str, str], office: Path,
                                                          run: Run) -> None:
    """An office that issued before its node was set up (or while it was down): more than one
    batch is said before it is sent, and counted as it goes; minutes of silence read as a
    hang. The usual one batch stays quiet."""
    url, token = node
    store = IssuerStore.open(office)
    claims = parse_claims(json.loads((EXAMPLES / "claims-mexicali.json").read_text("utf-8")))
    store.issue_many([Issuance(claims, None) for _ in range(PUBLISH_BATCH + 100)],
                     passphrase=PASSPHRASE)
    waiting = store.queued()
    assert waiting > PUBLISH_BATCH and waiting == len(store.pending())
    code, _, err = run("issuer", "ledger", "--url", url, "--token", token, "--home", str(office))
    assert code == 0, err
    assert f"Enviando {waiting} entradas" in err and f"Sending {waiting} entries" in err
    assert f"Public ledger: {waiting} entr(ies)" in err and store.queued() == 0
    store.issue_many([Issuance(claims, None) for _ in range(PUBLISH_BATCH + 1)],
                     passphrase=PASSPHRASE)
    seen: list[tuple[int, int]] = []
    total = store.queued()
    assert store.publish(PASSPHRASE, progress=lambda *p: seen.append(p)) == total
    assert seen == [(PUBLISH_BATCH, total), (total, total)]
    code, _, err = _issue(office, office.parent, run)
    assert code == 0 and "Enviando" not in err and "1 entr(ies)" in err, err


def test_a_reason_an_earlier_release_queued_goes_public_as_unspecified(
        node: tuple[str, str], office: Path, passphrase: str, homes: dict[str, Path],
        run: Run) -> None:
    """An office upgraded with "fraud" still queued (earlier releases queued the reason given):
    the node now refuses it on the public record, and the queue would stick behind it; sent
    as ``unspecified``, as the office queues reasons since."""
    url, token = node
    store = IssuerStore.open(office)
    cred = store.issue(parse_claims(json.loads((EXAMPLES / "claims-mexicali.json").read_text(
        encoding="utf-8"))), holder_key=None, passphrase=PASSPHRASE)
    change = store.set_status(cred.credential_id, "revoked", "fraud", passphrase=PASSPHRASE)
    queued = [(i, e) for i, e in store.pending() if e["type"] == "status_changed"]
    with store.engine.begin() as db:  # as an earlier release queued it
        for row_id, entry in queued:
            db.execute(outbox.update().where(outbox.c.id == row_id).values(
                entry=json.dumps({**entry, "reason": "fraud"})))
    store.engine.dispose()
    assert run("issuer", "ledger", "--url", url, "--token", token, "--home", str(office))[0] == 0
    assert store.queued() == 0
    code, out, err = run("ledger", "entries", "--type", "status_changed",
                         "--home", str(homes["ledger"]))
    assert code == 0, err
    assert [(c["entry"]["index"], c["entry"]["reason"]) for c in map(json.loads,
                                                                   out.splitlines())] == [
        (change["index"], "unspecified")]
