"""Commands for one machine: the verifying webhook receiver and the demo of the whole job."""

from __future__ import annotations

import argparse

from handoff.commands.processes import DEFAULT_HOST, add_listen_options

DEFAULT_RECEIVER_PORT = 9000


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the demo and receiver commands."""
    demo = commands.add_parser(
        "demo",
        help="run the whole job on this machine: API, relay, worker, receiver and a handoff",
    )
    add_listen_options(demo)
    demo.add_argument(
        "--exit",
        action="store_true",
        help="stop once both events were verified (exit 0), or after 60 s (exit 1)",
    )
    demo.set_defaults(handler=demo_command)

    receiver = commands.add_parser(
        "receiver", help="receive webhooks locally, verify signatures and print each event"
    )
    receiver.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    receiver.add_argument(
        "--port",
        type=_port_or_zero,
        default=DEFAULT_RECEIVER_PORT,
        help=f"TCP port to listen on, 0 for any free one (default {DEFAULT_RECEIVER_PORT})",
    )
    receiver.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="S",
        help="signing secret to accept; repeat during a rotation; without one nothing is verified",
    )
    receiver.set_defaults(handler=receiver_command)


def demo_command(args: argparse.Namespace) -> int:
    """Run `handoff.demo.run_demo`."""
    from handoff.demo import run_demo

    return run_demo(host=args.host, port=args.port, exit_after=args.exit)


def receiver_command(args: argparse.Namespace) -> int:
    """Serve the verifying receiver in the foreground until Ctrl-C."""
    from handoff.receiver import VerifyingReceiver

    receiver = VerifyingReceiver(args.secret, host=args.host, port=args.port)
    secrets_note = (
        f"{len(args.secret)} secret(s)" if args.secret else "no secret: nothing is verified"
    )
    print(f"receiving webhooks at {receiver.url} ({secrets_note}); Ctrl-C stops", flush=True)
    try:
        receiver.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


def _port_or_zero(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}; use 0 to 65535")
    return port
