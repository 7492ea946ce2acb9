"""Optional compilation of the counter's verification hot path with mypyc.

Everything is configured in ``pyproject.toml``; this file exists only for the one thing a
declarative configuration cannot say: with ``PASAPORTE_COMPILE=1`` the modules below are compiled
to C extensions by mypyc (the compiler of the mypy project, the way black and mypy themselves
ship). The source stays the same typed Python, which still runs as is wherever nothing was
compiled; compiled, one presentation check costs about half the Python time around its two
Ed25519 verifications (``make bench``: ``verify_vs_floor``). ``make compile`` (a step of
``make run``, ``make test`` and ``make bench``) builds them in place and rebuilds them whenever
a source changes.

Why these modules: they are everything a scan runs (QR text → base45 → zlib → CBOR → COSE →
disclosures → status → policy → result), and nothing that does I/O, so compiling them changes
no behaviour a test could tell apart except speed.
"""

from __future__ import annotations

import os

from setuptools import setup

HOT_PATH = [
    "credential/errors.py",
    "credential/base45.py",
    "credential/transport.py",
    "credential/cbor.py",
    "credential/ed25519.py",
    "credential/cose.py",
    "credential/merkle.py",
    "credential/sd.py",
    "credential/ids.py",
    "credential/claims.py",
    "credential/statuslist.py",
    "credential/records.py",
    "credential/passport.py",
    "verifier/policy.py",
    "verifier/engine.py",
]

ext_modules = []
if os.environ.get("PASAPORTE_COMPILE") == "1":
    from mypyc.build import mypycify  # a build-time tool only: mypy is a development dependency

    # One shared library inside the package (the default is a hash-named top-level module, which
    # only imports from the checkout's root directory).
    ext_modules = mypycify(HOT_PATH, opt_level="3", group_name="credential._hotpath")

setup(ext_modules=ext_modules)
