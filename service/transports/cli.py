"""The `marrowscope` command line: one parser, sub-commands contributed by transport modules."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from service import __version__
from service.domain.errors import MarrowscopeError

COMMAND_MODULES = (
    "service.transports.cli_analyze",
    "service.transports.cli_jobs",
    "service.transports.cli_scp",
    "service.transports.cli_training",
)

EXIT_CODES = {
    "invalid_argument": 2,
    "not_found": 3,
    "unsupported_format": 4,
    "slide_unreadable": 4,
    "missing_mpp": 2,
    "slide_too_large": 4,
    "model_unavailable": 5,
    "cancelled": 130,
    "permission_denied": 6,
    "resource_exhausted": 7,
    "output_error": 8,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marrowscope", description="Bone-marrow cellularity on whole-slide images."
    )
    parser.add_argument("--version", action="version", version=f"marrowscope {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # third-party libraries' deprecation chatter is not for users
        for noisy in ("pydicom", "wsidicom", "wsidicomizer", "opentile", "highdicom"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        code: int = args.func(args)
    except MarrowscopeError as exc:
        print(f"marrowscope: error: {exc}", file=sys.stderr)
        return EXIT_CODES.get(exc.code, 1)
    except KeyboardInterrupt:
        print("marrowscope: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, permissions, unwritable --out, …
        print(f"marrowscope: error: {exc}", file=sys.stderr)
        return 8
    except Exception as exc:  # a bug: one line for users, the traceback with -v
        logging.getLogger("marrowscope").debug("unexpected error", exc_info=True)
        print(f"marrowscope: internal error: {type(exc).__name__}: {exc} "
              "(run with -v for the traceback)", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
