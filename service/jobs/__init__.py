"""Durable analysis jobs: the ledger (SQLite default), executors (local; Ray later), the manager."""
