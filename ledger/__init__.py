"""The transparency ledger: an append-only, hash-chained RFC 9162 Merkle log with C2SP signed
checkpoints, cross-city witnessing and mirroring, on SQLAlchemy (SQLite or PostgreSQL).

Public modules: :mod:`ledger.store` (``LedgerStore``: the issuer's API), :mod:`ledger.entries`
(the typed entries), :mod:`ledger.audit`, :mod:`ledger.http` (``create_app``),
:mod:`ledger.witness`, :mod:`ledger.mirror` and :mod:`ledger.cli` (``pasaporte ledger``). The
pure proof and note formats live in :mod:`credential.merkle` and :mod:`credential.note`.
"""
