"""Accounts and API keys: issues keys, stores only keyed hashes, authenticates."""
