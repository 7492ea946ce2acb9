"""The README's promises: its first commands, and its ``--help`` examples, are real."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import Run

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_opens_with_the_two_setup_commands() -> None:
    first_block = README.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line]
    assert commands == ["make run", "make test"]


def test_help_examples_run(run: Run) -> None:
    examples = re.findall(r"^pasaporte((?: [a-z]+)*) --help$", README, re.M)
    assert len(examples) >= 5
    for args in examples:
        code, out, _ = run(*args.split(), "--help")
        assert code == 0 and "Usage" in out, args


def test_documented_sizes_match_the_format() -> None:
    """The size table in the README is what the code produces today."""
    import nacl.signing

    from credential import transport
    from tests.factory import City, presentation

    city, holder = City(), nacl.signing.SigningKey.generate()
    cred = city.issue(holder=holder)
    library = presentation(cred, holder, "library", ["residence", "library"])
    row = re.search(r"\| library presentation \| (\d+) \|", README)
    # The status index and timestamps vary a few bytes between credentials.
    assert row and abs(len(library) - int(row.group(1))) <= 10
    assert len(library) <= 555
    paper = transport.pack(city.issue().to_cbor())
    assert len(paper) <= 700
