"""Protocols the service depends on; adapters implement them."""
