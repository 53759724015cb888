"""The `handoff` console command: parses arguments and runs one subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sqlalchemy.exc import OperationalError, ProgrammingError

from handoff import __version__
from handoff.commands import CommandError, admin, deliveries, local, ops, processes, secrets
from handoff.settings import SettingError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of every subcommand; each sets `handler` to the function it runs."""
    parser = argparse.ArgumentParser(
        prog="handoff",
        description="Sol Helps webhook handoff: transactional outbox, relay, Dramatiq workers "
        "and signed webhook deliveries. Settings come from environment variables such as "
        "DATABASE_URL, BROKER_URL and HANDOFF_SECRET_KEY.",
    )
    parser.add_argument("--version", action="version", version=f"handoff {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    processes.register(commands)
    local.register(commands)
    admin.register(commands)
    deliveries.register(commands)
    ops.register(commands)
    secrets.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `handoff` command line.

    Args:
        argv: the arguments after the program name; `sys.argv[1:]` when None.

    Returns:
        The exit code: 0 on success, 1 when the command failed, 2 for a missing or invalid
        setting or argument.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0

    # Each branch prints one line and no traceback: these are the failures an operator
    # fixes outside the code.
    try:
        return handler(args)
    except SettingError as error:
        print(error, file=sys.stderr)
        return 2
    except CommandError as error:
        print(f"handoff: {error}", file=sys.stderr)
        return 1
    except OperationalError as error:
        print(f"handoff: database unavailable: {_first_line(error.orig)}", file=sys.stderr)
        return 1
    except ProgrammingError as error:
        if "does not exist" in str(error.orig):
            print(
                f"handoff: {_first_line(error.orig)}; run `handoff migrate` first",
                file=sys.stderr,
            )
            return 1
        raise
    except KeyboardInterrupt:
        return 130


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
