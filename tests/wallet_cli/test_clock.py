"""``wallet present`` and the clocks: the times the wallet knows have passed (the passport's
signing, the trusted bundle's making) were stamped by the issuing office's clock, which counters
allow to run up to a day ahead when it makes a bundle (``credential.times.OFFICE_CLOCK_AHEAD_S``)
and do not hold to theirs when it signs a passport. A resident whose clock is right is never
told the counter will refuse, nor to change it, because an office's clock ran ahead: only a
clock further behind the bundle's making than counters allow gets ``wallet_clock_behind``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.factory import City
from tests.wallet_cli.conftest import PASSPHRASE, Run, example_claims
from verifier.engine import CLOCK_BEHIND_S, Verifier
from wallet_cli import store
from wallet_cli.store import Wallet

HOUR = 3600


def _ahead_city(ahead: int) -> City:
    """A city whose office clock runs ``ahead`` seconds ahead of the real one."""
    return City(city="Mexicali", country="MX", code="mx-mxl", now=int(time.time()) + ahead,
                catalogued=False)


def _trusted_and_issued(wallet: Wallet, city: City, made_at: int | None = None) -> str:
    wallet.trust([city.bundle(made_at=made_at)], [city.root.to_json().encode()])
    return wallet.import_text(city.issue_text(wallet.public_key, example_claims("mexicali"))).id


def test_an_office_clock_an_hour_ahead_is_not_a_refusal(wallet: Wallet) -> None:
    """The report: the office's PC ran an hour ahead. A counter with a right clock accepts the
    code, so the wallet must not say it will refuse it; it says the clocks disagree."""
    city = _ahead_city(HOUR)
    cred_id = _trusted_and_issued(wallet, city)
    now = int(time.time())
    shown = wallet.present(cred_id, service="library", passphrase=PASSPHRASE, now=now)
    assert shown.clock_behind is None
    assert shown.clock_differs == city.now
    verifier = city.verifier()
    assert verifier.clock_behind(now) is None  # a counter with a right clock ...
    assert verifier.verify(shown.text, service="library", now=now).accepted  # ... accepts


@pytest.mark.parametrize(("ahead", "refused"), [
    (store.CLOCK_SLACK, False), (CLOCK_BEHIND_S, False), (CLOCK_BEHIND_S + 1, True),
    (3 * CLOCK_BEHIND_S, True)])
def test_the_wallet_says_refused_exactly_when_a_right_counter_refuses(
        wallet: Wallet, ahead: int, refused: bool) -> None:
    """The bundle made ``ahead`` of this (right) clock: ``wallet_clock_behind`` where, and only
    where, a counter whose clock is right refuses every scan (``counter_clock_behind``)."""
    now = int(time.time())
    city = _ahead_city(0)
    cred_id = _trusted_and_issued(wallet, city, made_at=now + ahead)
    shown = wallet.present(cred_id, service="library", passphrase=PASSPHRASE, now=now)
    right = Verifier(bundles=[city.bundle(made_at=now + ahead)], roots=[city.root])
    assert (right.clock_behind(now) is not None) == refused
    assert (shown.clock_behind is not None) == refused
    if refused:
        assert shown.clock_behind == now + ahead and shown.clock_differs is None
    else:
        # within the slack nothing is said; beyond it, only that the clocks disagree
        assert shown.clock_differs == (None if ahead <= store.CLOCK_SLACK else now + ahead)


def test_a_clock_within_the_slack_says_nothing(wallet: Wallet) -> None:
    city = _ahead_city(store.CLOCK_SLACK - 10)
    cred_id = _trusted_and_issued(wallet, city)
    shown = wallet.present(cred_id, service="library", passphrase=PASSPHRASE,
                           now=int(time.time()))
    assert shown.clock_behind is None and shown.clock_differs is None


def test_present_an_hour_behind_the_office_neither_says_refused_nor_to_change_the_clock(
        run: Run, wallet_home: Path) -> None:
    """Through the command: a milder note that names both clocks, and the code it prints is
    accepted by a counter whose clock is right (the real one)."""
    city = _ahead_city(HOUR)
    cred_id = _trusted_and_issued(Wallet.open(wallet_home), city)
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("PU1:")
    assert "[wallet_clock_behind]" not in result.stderr
    assert "[wallet_clock_differs]" in result.stderr
    assert "will refuse this code" not in result.stderr
    assert "rechazará este código" not in result.stderr
    assert "Set the correct" not in result.stderr and "Ponga la fecha" not in result.stderr
    # either clock may be the wrong one: both are named
    assert "this computer's clock" in result.stderr and "office" in result.stderr
    assert "reloj de esta computadora" in result.stderr and "oficina" in result.stderr
    assert city.verifier().verify(result.stdout.strip(), service="library").accepted


def test_present_more_than_a_day_behind_the_bundle_still_says_refused(
        run: Run, wallet_home: Path) -> None:
    """Beyond what counters allow, the warning stays: a counter with a right clock refuses."""
    city = _ahead_city(0)
    made_at = int(time.time()) + 2 * CLOCK_BEHIND_S
    cred_id = _trusted_and_issued(Wallet.open(wallet_home), city, made_at=made_at)
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    assert "[wallet_clock_behind]" in result.stderr
    assert "[wallet_clock_differs]" not in result.stderr
    assert "will refuse this code" in result.stderr and "rechazará este código" in result.stderr
    counter = Verifier(bundles=[city.bundle(made_at=made_at)], roots=[city.root])
    verdict = counter.verify(result.stdout.strip(), service="library")
    assert (verdict.decision, verdict.code) == ("rejected", "counter_clock_behind")


def test_a_passport_signed_days_ahead_is_not_called_refused(wallet: Wallet) -> None:
    """The office's clock three days fast when it signed, the bundle made with a right one:
    counters do not hold a passport's signing to their clock, and accept the code; the wallet
    said "the counter will refuse this code" and told a resident with a right clock to change
    it. It says the clocks disagree, as within a day."""
    city = _ahead_city(3 * 86400)
    now = int(time.time())
    cred_id = _trusted_and_issued(wallet, city, made_at=now)
    shown = wallet.present(cred_id, service="library", passphrase=PASSPHRASE, now=now)
    assert shown.clock_behind is None and shown.clock_differs == city.now
    right = Verifier(bundles=[city.bundle(made_at=now)], roots=[city.root])
    assert right.verify(shown.text, service="library", now=now).accepted
