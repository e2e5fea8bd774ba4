"""CLI sub-commands (placeholder until implemented)."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers this module's sub-commands; each sets ``func(args) -> int``."""
