"""The process `handoff worker` becomes: Dramatiq's CLI run in-process after logging and metrics.

`python -m dramatiq` sets up plain-text logging of its own before it imports `worker.boot`,
so its first lines (the boot line among them) would not be JSON. Here the service's logging
is configured first, and Dramatiq's own set-up is turned off (`--skip-logging`). It takes
Dramatiq's own arguments, such as `worker.boot --processes 2 --threads 16 --queues handoff`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

# Only the standard library is imported at the top: prometheus-client chooses its
# multiprocess mode when it is first imported, so the folder must be set before that.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
METRICS_FORK_FUNCTION = "worker.metrics:serve_worker_metrics"


def main(argv: list[str] | None = None) -> int:
    """Run Dramatiq's worker command with the service's logging and metrics.

    Args:
        argv: Dramatiq's command-line arguments; `sys.argv[1:]` when None.

    Returns:
        Dramatiq's exit code, or 2 for an invalid setting.
    """
    created_dir = None
    if MULTIPROC_DIR_VARIABLE not in os.environ:
        created_dir = tempfile.mkdtemp(prefix="handoff-worker-metrics-")
        os.environ[MULTIPROC_DIR_VARIABLE] = created_dir

    from dramatiq import cli as dramatiq_cli

    from handoff.logging import configure_logging
    from handoff.settings import SettingError, load_settings

    try:
        settings = load_settings()
    except SettingError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(settings.log_format)

    arguments = [*(sys.argv[1:] if argv is None else argv), "--skip-logging"]
    if settings.worker_metrics_port:
        arguments += ["--fork-function", METRICS_FORK_FUNCTION]
    parsed = dramatiq_cli.make_argument_parser().parse_args(arguments)  # type: ignore[no-untyped-call]

    # Dramatiq's parent copies what its worker processes write to sys.stderr. The service
    # logs to stdout, one JSON object per line, so that is where those copies go too.
    sys.stderr = sys.stdout
    try:
        return int(dramatiq_cli.main(parsed))  # type: ignore[no-untyped-call]
    finally:
        if created_dir is not None:
            shutil.rmtree(created_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
