"""Alembic migrations of the office store (``issuer.db``); run by ``issuer.store.migrate``."""

HEAD = "0003"  # the newest revision: an open store at it skips Alembic altogether
