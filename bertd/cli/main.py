"""The `bertd` command: `bertd serve` runs the server until SIGTERM or SIGINT; the other
subcommands are a client of a running server (see commands.py) and `bertd demo`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bertd import __version__
from bertd.cli.commands import add_client_commands, run_client_command
from bertd.cli.demo import add_demo_command, demo
from bertd.cli.language import tr
from bertd.cli.worker import add_worker_command, run_worker


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertd", description=tr("Fine-tune BERT text classifiers over a REST API."))
    parser.add_argument("--version", action="version", version=f"bertd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help=tr("run the HTTP server (configuration from the environment)"))
    serve.add_argument("--host", help=tr("address to listen on (API_HOST, default 0.0.0.0)"))
    serve.add_argument("--port", type=int, help=tr("TCP port (API_PORT, default 8000)"))
    serve.add_argument("--data-dir", type=Path, help=tr("uploads, models and database (DATA_DIR, default ./data)"))
    add_worker_command(commands, dict(os.environ))
    add_client_commands(commands, dict(os.environ))
    add_demo_command(commands, dict(os.environ))
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.command == "serve":
        from bertd.server.serve import serve

        return serve(arguments.host, arguments.port, arguments.data_dir)
    if arguments.command == "demo":
        return demo(arguments)
    if arguments.command == "worker":
        return run_worker(arguments)
    return run_client_command(arguments)
