"""The resident's command-line wallet: ``pasaporte wallet …``.

``wallet_cli.store`` holds the logic (the sealed holder key, checked credentials on disk, building
presentations); ``wallet_cli.cli`` is the click group mounted by ``pasaporte.cli``.
"""

from wallet_cli.store import CredentialEntry, ImportResult, Presentation, Wallet

__all__ = ["CredentialEntry", "ImportResult", "Presentation", "Wallet"]
