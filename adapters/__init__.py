"""Adapters around third-party I/O libraries (slides, segmenters, writers, PACS)."""
