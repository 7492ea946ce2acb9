"""Alembic migrations of the office store (``issuer.db``); run by ``issuer.store.migrate``."""

HEAD = "0004"  # the newest revision: an open store at it skips Alembic altogether
