"""What keyboard-wedge scanners and their logs do to a code, at a real counter: suffix and prefix
keys, caps lock, a scanner set to another keyboard language than the computer's, two codes run
together, a code cut short, padding of every kind. Each is read as the same payload or refused
with its own code and a message in both languages; never a traceback, never a wrong acceptance.
Real signed presentations, the real command line (``--batch`` replays, ``--scan`` live)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nacl.signing
import pytest

from credential import base45, transport
from credential.times import rfc3339
from tests.conftest import Run
from tests.factory import NOW, City, presentation
from verifier.cli import MAX_LINE, MAX_SKIP
from verifier.engine import Verifier

LIB = ["residence", "library"]
# What a scanner set to US English types on a computer set to Spanish: a keyboard-wedge scanner
# sends key positions, and these five base45 characters sit elsewhere on the Spanish layouts
# (Latin America and Spain differ only in the "+", Shift and the key right of "'").
US_ON_LATAM = str.maketrans({"*": "(", "+": "¡", "-": "'", "/": "-", ":": "Ñ"})
US_ON_SPAIN = str.maketrans({"*": "(", "+": "¿", "-": "'", "/": "-", ":": "Ñ"})


class Scene:
    """One city, one resident's library presentation (made at ``NOW``), the counter's files."""

    def __init__(self) -> None:
        self.city = City()
        holder = nacl.signing.SigningKey.generate()
        # A code with every character the layouts change (and a space): the first, as codes are
        # laid out now; each try a new credential, as presenting one again gives the same code.
        for _ in range(50):
            cred = self.city.issue(holder=holder)
            self.code = presentation(cred, holder, "library", LIB)
            if set(" *+-/") <= set(self.code[4:]):
                break
        assert set(" *+-/") <= set(self.code[4:])
        assert base45.decode(self.code[4:])[0] != 0x78  # not compressed (signatures do not)
        self.verifier = self.city.verifier()

    def files(self, tmp_path: Path) -> list[str]:
        (tmp_path / "b.cbor").write_bytes(self.city.bundle())
        (tmp_path / "r.json").write_text(self.city.root.to_json())
        return ["--service", "library", "--bundle", str(tmp_path / "b.cbor"),
                "--trust-root", str(tmp_path / "r.json"), "--at", rfc3339(NOW)]


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


def _replay(run: Run, scene: Scene, tmp_path: Path,
            log: bytes) -> tuple[int, list[dict[str, object]]]:
    (tmp_path / "scans.log").write_bytes(log)
    code, out, err = run("verify", *scene.files(tmp_path), "--json", "--batch",
                         str(tmp_path / "scans.log"))
    assert "Traceback" not in err
    return code, [json.loads(line) for line in out.splitlines()]


def _es(code: str, layout: dict[int, str]) -> str:
    return code.translate(layout)


# Each: what one scan leaves on its line of the log, made from the good code's text.
SAME_PAYLOAD: dict[str, Callable[[str], str]] = {
    "enter_cr": lambda g: g + "\r",
    "lf": lambda g: g + "\n",
    "crlf": lambda g: g + "\r\n",
    "tab_suffix_then_enter": lambda g: g + "\t\r\n",
    "stx_etx_frame": lambda g: "\x02" + g + "\x03\n",
    "aim_identifier_qr": lambda g: "]Q1" + g + "\n",
    "caps_lock": lambda g: g.lower() + "\n",
    "caps_lock_with_aim_identifier": lambda g: ("]Q1" + g).lower() + "\n",
    "spaces_around": lambda g: "   " + g + "  \n",
    "non_breaking_spaces_around": lambda g: "\xa0" + g + "\xa0\u202f\n",
    "byte_order_mark_on_a_later_line": lambda g: "\ufeff" + g + "\n",
    "nul_padding": lambda g: "\0\0" + g + "\0\n",
    "non_breaking_space_for_a_space_inside": lambda g: g.replace(" ", "\xa0") + "\n",
    "us_scanner_latin_american_computer": lambda g: _es(g, US_ON_LATAM) + "\n",
    "us_scanner_spanish_computer": lambda g: _es(g, US_ON_SPAIN) + "\n",
    "us_scanner_spanish_computer_caps_lock": lambda g: _es(g, US_ON_LATAM).lower() + "\n",
    "us_scanner_spanish_computer_aim_identifier": lambda g: "+Q1" + _es(g, US_ON_LATAM) + "\n",
}


@pytest.mark.parametrize("name", sorted(SAME_PAYLOAD))
def test_what_a_scanner_adds_or_changes_losslessly_is_the_same_payload(
        name: str, scene: Scene, run: Run, tmp_path: Path) -> None:
    line = SAME_PAYLOAD[name](scene.code)
    code, results = _replay(run, scene, tmp_path, line.encode())
    assert [(r["line"], r["code"]) for r in results] == [(1, "accepted")]
    assert code == 0


def _latin1_log(g: str) -> bytes:
    # A Spanish computer's log saved as Latin-1: "Ñ" is the byte 0xD1, no UTF-8 (so U+FFFD)
    return _es(g, US_ON_LATAM).encode("latin-1") + b"\n"


def _cut(g: str, extra: int) -> str:
    # ``extra`` characters past a whole number of triplets, the last one kept not a space: a cut
    # right after a space loses it with the scanner's padding and reads as the other kind of cut
    # (the code is random, so a fixed cut would be that 1 time in 45).
    return next(g[:cut] for k in range(120, len(g) // 3)
                if g[(cut := 4 + 3 * k + extra) - 1] != " ")


REFUSED: dict[str, tuple[Callable[[str], bytes], str]] = {
    # no Enter (or only a Tab) after each code: two codes on one line are one refusal
    "two_codes_on_one_line": (lambda g: (g + g + "\n").encode(), "scan_several"),
    "two_codes_with_a_tab_between": (lambda g: (g + "\t" + g + "\n").encode(), "scan_several"),
    "two_codes_framed_stx_etx": (lambda g: ("\x02" + g + "\x03\x02" + g + "\x03\n").encode(),
                                 "scan_several"),
    "two_codes_spanish_computer": (lambda g: (_es(g + g, US_ON_LATAM) + "\n").encode(),
                                   "scan_several"),
    "ten_codes_with_tabs_too_long_for_one": (lambda g: ("\t".join([g] * 10) + "\n").encode(),
                                             "scan_several"),
    # the code moved away mid-read: cut where its bytes end early, or mid-triplet
    "cut_short": (lambda g: (_cut(g, 0) + "\n").encode(), "scan_incomplete"),
    "cut_short_mid_triplet": (lambda g: (_cut(g, 1) + "\n").encode(), "base45_invalid"),
    "cut_to_the_prefix": (lambda g: b"PU1:\n", "scan_incomplete"),
    "nul_inside": (lambda g: (g[:100] + "\0" + g[100:] + "\n").encode(), "base45_invalid"),
    # a keyboard language we cannot map back with certainty: refused, the clerk told what to do
    "spanish_computer_log_saved_as_latin1": (_latin1_log, "keyboard_layout"),
    "us_scanner_german_computer": (lambda g: (g.replace(":", "Ö") + "\n").encode(),
                                   "keyboard_layout"),
    "spanish_scanner_us_computer": (lambda g: (g.replace(":", ">", 1) + "\n").encode(),
                                    "keyboard_layout"),
    "us_scanner_french_computer": (lambda g: ("PU&M" + g[4:] + "\n").encode(),
                                   "keyboard_layout"),
    "not_utf8_noise": (lambda g: b"PU1:\xff\xfe" + g[4:].encode() + b"\n", "base45_invalid"),
    "another_code": (lambda g: b"HC1:6BFOXN*TS0BI$ZD\n", "not_pasaporte"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_cannot_be_read_back_is_refused_with_its_own_code(
        name: str, scene: Scene, run: Run, tmp_path: Path) -> None:
    make, expected = REFUSED[name]
    code, results = _replay(run, scene, tmp_path, make(scene.code))
    assert [(r["line"], r["code"]) for r in results] == [(1, expected)]
    assert code == 1
    message = results[0]["message"]
    assert isinstance(message, dict) and set(message) == {"es", "en"}
    assert all(isinstance(m, str) and m and "{" not in m for m in message.values())


def test_the_layout_refusal_tells_the_clerk_what_to_set(scene: Scene) -> None:
    r = scene.verifier.verify(scene.code.replace(":", "Ö"), service="library", now=NOW)
    assert r.code == "keyboard_layout"
    assert "idioma de teclado" in r.message["es"] and "keyboard language" in r.message["en"]
    r = scene.verifier.verify(scene.code * 2, service="library", now=NOW)
    assert r.code == "scan_several" and "Enter" in r.message["es"] and "Enter" in r.message["en"]


def test_a_code_cut_anywhere_is_refused_and_asked_for_again(scene: Scene) -> None:
    """Every cut of a real presentation: refused, with a message that asks for another scan
    (or, cut inside the prefix, says it is no passport); never accepted, never a signature
    refusal that would make the clerk think of a forgery."""
    seen = set()
    for cut in range(len(scene.code)):
        r = scene.verifier.verify(scene.code[:cut], service="library", now=NOW)
        seen.add(r.code)
        if r.code in ("base45_invalid", "scan_incomplete"):
            assert "scan it again" in r.message["en"], (cut, r.code)
            assert "Vuelva a escanearlo" in r.message["es"], (cut, r.code)
    assert seen <= {"not_pasaporte", "base45_invalid", "scan_incomplete", "cbor_invalid"}, seen
    assert {"base45_invalid", "scan_incomplete"} <= seen


def test_normalising_a_layout_never_accepts_another_code(scene: Scene) -> None:
    """Read back as typed on a Spanish computer, a code altered anywhere is still refused: the
    mapping changes nothing a signature does not then check."""
    typed = list(_es(scene.code, US_ON_LATAM))
    for i in range(5, len(typed), 7):
        altered = typed[:]
        altered[i] = "0" if altered[i] != "0" else "1"
        r = scene.verifier.verify("".join(altered), service="library", now=NOW)
        assert r.decision == "rejected", i


def test_a_replay_gives_one_result_per_line_that_holds_a_scan(
        scene: Scene, run: Run, tmp_path: Path) -> None:
    """A counter's replay is matched with its log line by line: one result for each line that
    holds anything, accepted or refused, named by its line (a note someone typed into the log
    too); none for a blank line or a line of scanner framing only."""
    g = scene.code
    log = "".join([
        "\ufeff# counter 3, morning shift\r\n",  # 1: Notepad's BOM, a note, Windows line ends
        g + "\r\n",  # 2
        "\r\n",  # 3: blank
        "\x02\x03\r\n",  # 4: a scanner's empty read, framing only
        "\0\0\r\n",  # 5: NUL padding only
        "   # a note, indented\r\n",  # 6
        g + g + "\r\n",  # 7: two codes, one refusal
        "not a passport\r\n",  # 8
        g.lower(),  # 9: the last line may lack its line end
    ]).encode()
    code, results = _replay(run, scene, tmp_path, log)
    assert [(r["line"], r["code"]) for r in results] == [
        (1, "not_pasaporte"), (2, "accepted"), (6, "not_pasaporte"), (7, "scan_several"),
        (8, "not_pasaporte"), (9, "accepted")]
    assert code == 1


def test_a_one_megabyte_line_is_one_refusal_and_the_replay_goes_on(
        scene: Scene, run: Run, tmp_path: Path) -> None:
    """Bounded: never held whole (at most MAX_LINE bytes of it), refused as too large, and the
    next line read as usual. Past MAX_SKIP the input is no log at all (test_cli)."""
    g = scene.code.encode()
    big = b"PU1:" + b"A" * (1_000_000 - 4)
    assert MAX_LINE < len(big) < MAX_SKIP
    code, results = _replay(run, scene, tmp_path, g + b"\n" + big + b"\r\n" + g + b"\n")
    assert [(r["line"], r["code"]) for r in results] == [
        (1, "accepted"), (2, "too_large"), (3, "accepted")]
    assert code == 1


def test_a_space_starting_a_code_is_data_not_padding() -> None:
    """Space is a base45 character: only the padding around a code goes, never one inside it,
    even right after the prefix."""
    payload = b"\x00\x24"  # base45 " 00": a space first
    assert base45.encode(payload) == " 00"
    assert transport.unpack(" \tPU1: 00 \r\n") == payload
    assert transport.unpack("PU1:\xa000") == payload  # a non-breaking space for it
    assert transport.unpack("PU1:00") != payload


def test_the_counter_at_work_reads_what_real_scanners_type(scene: Scene,
                                                           tmp_path: Path) -> None:
    """``--scan`` live: a scanner's lines on standard input, each answered with one result."""
    g = scene.code
    typed = "".join([
        g + "\r",  # Enter as CR
        "\x02]Q1" + g + "\x03\r\n",  # STX, AIM identifier, ETX, CRLF
        _es(g, US_ON_SPAIN).lower() + "\t\n",  # Spanish computer, caps lock, Tab then Enter
        g + g + "\n",  # no suffix between two scans
        _cut(g, 0) + "\n",  # moved away
        "\n",  # an Enter on its own: nothing
    ]).encode()
    proc = subprocess.run(
        [sys.executable, "-m", "pasaporte.cli", "verify", *scene.files(tmp_path), "--scan",
         "--json"], input=typed, capture_output=True, timeout=120, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    codes = [json.loads(line)["code"] for line in proc.stdout.splitlines()]
    assert codes == ["accepted", "accepted", "accepted", "scan_several", "scan_incomplete"]
    assert "Escaneos / Scans: 5 — aceptados / accepted: 3, rechazados / rejected: 2" in err


def test_padding_holds_no_base45_character_but_the_space() -> None:
    assert set(transport.PADDING) & set(base45.ALPHABET) == {" "}


def test_a_refusal_with_nothing_to_add_is_kept(scene: Scene) -> None:
    """A single code refused for another reason keeps that reason's code."""
    verifier = Verifier(bundles=[scene.city.bundle()], roots=[scene.city.root])
    for text, code in (("PU1:A", "base45_invalid"),
                       # its last character another (the same one left it accepted)
                       (scene.code[:-1] + ("1" if scene.code.endswith("0") else "0"),
                        "holder_signature_invalid"),
                       ("HC1:6BFOXN*TS0BI$ZD", "not_pasaporte")):
        assert verifier.verify(text, service="library", now=NOW).code == code, text
