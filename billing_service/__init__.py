"""Prices, API and user credit wallets, and the append-only ledger."""
