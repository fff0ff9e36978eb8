"""The ``mriscan`` command line: parse options, call the library, print, map errors to exit codes.

Heavy libraries (tensorflow, keras, lime) are imported inside the commands that need them, so
``mriscan --help`` and ``mriscan --version`` answer at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from mriscan import __version__
from mriscan.errors import MriscanError

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_UNREADABLE = 3

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 3 output complete but some files could not be read; "
    "1 fatal error (no or bad model, unwritable output, bad data layout); 2 usage error."
)


def _fatal_on_mriscan_error(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a MriscanError raised by the library into a message and the fatal exit code."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MriscanError as error:
            click.echo(f"mriscan: error: {error}", err=True)
            sys.exit(EXIT_FATAL)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="mriscan")
def cli() -> None:
    """mriscan: brain-tumour triage for 2-D MRI slices.

    A research and triage aid, not a diagnostic device.
    """


# --- commands -------------------------------------------------------------------------------


def main() -> None:
    """Console entry point."""
    cli()
