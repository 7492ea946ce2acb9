"""A counter whose clock is behind (reset to 2000 by a flat CMOS battery, never synchronised)
refuses every scan, saying so, instead of taking expired passports and old screenshots for
current ones or telling a resident a new passport is "not valid yet". Real signed bundles and
presentations, the real clock (a bundle made ahead of it is the counter's clock behind)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nacl.signing
import pytest

from tests.conftest import Run
from tests.factory import City, presentation
from verifier.engine import CLOCK_BEHIND_S, Verifier

LIB = ["residence", "library"]
HOUR = 3600


@pytest.fixture
def city() -> City:
    return City(now=int(time.time()))


def _code(city: City) -> str:
    holder = nacl.signing.SigningKey.generate()
    return presentation(city.issue(holder=holder), holder, "library", LIB, now=int(time.time()))


def _verifier(city: City, made_at: int) -> Verifier:
    return Verifier(bundles=[city.bundle(made_at=made_at)], roots=[city.root])


def test_a_clock_a_day_behind_its_bundle_refuses_every_scan_saying_why(city: City) -> None:
    code = _code(city)
    made_at = int(time.time()) + CLOCK_BEHIND_S + 2 * HOUR
    r = _verifier(city, made_at).verify(code, service="library")
    assert (r.decision, r.code) == ("rejected", "counter_clock_behind")
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(made_at))
    assert f"se hicieron el {made}" in r.message["es"]
    assert f"were made on {made}" in r.message["en"]
    assert "fecha y la hora correctas" in r.message["es"]
    assert "correct (or automatic) date and time" in r.message["en"]
    # refused before anything of the code is read: even text that is no passport
    assert _verifier(city, made_at).verify("hola", service="library").code == (
        "counter_clock_behind")


def test_an_office_clock_a_little_ahead_never_stops_its_counters(city: City) -> None:
    """The bundle made hours "in the future" (the office's clock ahead): scans go on."""
    r = _verifier(city, int(time.time()) + CLOCK_BEHIND_S - HOUR).verify(
        _code(city), service="library")
    assert (r.decision, r.code) == ("accepted", "accepted")


def test_one_office_clock_far_ahead_does_not_stop_the_counter_for_every_city(
        city: City) -> None:
    """Calexico's bundle made a year "ahead" (its office's clock wrong), Mexicali's now: the
    counter's clock is right by Mexicali's, and Mexicali's residents are served."""
    now = int(time.time())
    calexico = City("Calexico", "US", "USCXL", now=now)
    v = Verifier(bundles=[city.bundle(made_at=now),
                          calexico.bundle(made_at=now + 365 * 86400)],
                 roots=[city.root, calexico.root])
    r = v.verify(_code(city), service="library")
    assert (r.decision, r.code) == ("accepted", "accepted")


def test_a_time_given_is_taken_as_given(city: City) -> None:
    """``verify --at`` replays a day's log with today's bundle: no clock is read, none judged."""
    now = int(time.time())
    r = _verifier(city, now + 30 * 86400).verify(_code(city), service="library", now=now)
    assert (r.decision, r.code) == ("accepted", "accepted")


def test_the_counter_command_says_so_for_each_scan(city: City, run: Run,
                                                   tmp_path: Path) -> None:
    """``verify --batch``, no ``--at``: every line refused with the clock named, exit 1."""
    (tmp_path / "b.cbor").write_bytes(city.bundle(made_at=int(time.time()) + 3 * 86400))
    (tmp_path / "r.json").write_text(city.root.to_json())
    code = _code(city)
    (tmp_path / "scans.log").write_text(f"{code}\n{code}\n")
    status, out, err = run("verify", "--service", "library", "--bundle", str(tmp_path / "b.cbor"),
                           "--trust-root", str(tmp_path / "r.json"), "--json", "--batch",
                           str(tmp_path / "scans.log"))
    assert status == 1 and "Traceback" not in err, err
    assert [json.loads(line)["code"] for line in out.splitlines()] == [
        "counter_clock_behind"] * 2


def test_the_counter_at_work_is_told_at_the_start_what_to_put_right(city: City,
                                                                     tmp_path: Path) -> None:
    """``verify --scan``: a clock behind its bundles, or a city's revocation list past its
    age, is said once when the session starts, before the first resident is refused."""
    now = int(time.time())
    calexico = City("Calexico", "US", "USCXL", now=now)
    cases = {  # (Mexicali's bundle made, Calexico's): what the start says
        "clock": ((now + 3 * 86400, now + 3 * 86400), "[counter_clock_behind]"),
        "stale": ((now, now - 30 * 86400), "! Calexico: [status_stale]"),
        "fine": ((now, now), None),
    }
    for name, ((mexicali_made, calexico_made), said) in cases.items():
        (tmp_path / "m.cbor").write_bytes(city.bundle(made_at=mexicali_made))
        (tmp_path / "c.cbor").write_bytes(calexico.bundle(made_at=calexico_made))
        (tmp_path / "m.json").write_text(city.root.to_json())
        (tmp_path / "c.json").write_text(calexico.root.to_json())
        proc = subprocess.run(
            [sys.executable, "-m", "pasaporte.cli", "verify", "--service", "library",
             "--bundle", str(tmp_path / "m.cbor"), "--bundle", str(tmp_path / "c.cbor"),
             "--trust-root", str(tmp_path / "m.json"), "--trust-root", str(tmp_path / "c.json"),
             "--scan"], input=_code(city) + "\n", capture_output=True, text=True, timeout=120,
            check=False)
        start = proc.stderr.split("Escaneos / Scans")[0]  # before the first scan's result
        assert "Traceback" not in proc.stderr, proc.stderr
        if said is None:
            assert "! " not in start, (name, start)
        else:
            assert said in start, (name, start)
        if name == "stale":
            assert "Mexicali:" not in start  # its own list is fresh
