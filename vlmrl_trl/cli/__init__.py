"""The ``vlmrl-trl`` command. Each command group lives in its own module with a ``register`` function."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__

# Modules of this package that add subcommands; heavy imports happen inside each command's handler.
COMMAND_MODULES: tuple[str, ...] = ("score", "model", "data", "predict", "clip")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already says it, or there is no value to show
    (None, or an off flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action) or text


class HelpWithDefaults(argparse.ArgumentParser):
    """An argument parser whose help shows each option's default; sub-subcommands inherit it."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = HelpWithDefaults(
        prog="vlmrl-trl", description="Fine-tune and evaluate vision-language models on driving decisions."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; errors in user input, data or model files exit 2 with one readable line
    (``VLMRL_VERBOSE=1`` shows the traceback)."""
    import os

    from .. import quiet  # noqa: F401  (before the handlers' heavy imports)

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, OSError) as err:
        if os.environ.get("VLMRL_VERBOSE", "") not in ("", "0"):
            raise
        print(f"vlmrl-trl {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException) -> str:
    """An error's message on one line: a list of issues after the first line is summarised by its count."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    head = lines[0]
    if len(lines) > 2:
        return f"{head} {lines[1]} (and {len(lines) - 2} more lines; VLMRL_VERBOSE=1 shows them)"
    return " ".join(lines)


if __name__ == "__main__":
    sys.exit(main())
