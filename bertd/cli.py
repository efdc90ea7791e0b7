"""The `bertd` command: `bertd serve` starts the server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aiohttp import web
from loguru import logger

from bertd import __version__
from bertd.config import ConfigError, load_config
from bertd.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertd", description="Fine-tune BERT text classifiers over a REST API.")
    parser.add_argument("--version", action="version", version=f"bertd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server (configuration from the environment)")
    serve.add_argument("--host", help="address to listen on (API_HOST, default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="TCP port (API_PORT, default 8000)")
    serve.add_argument("--data-dir", type=Path, help="uploads, models and database (DATA_DIR, default ./data)")
    return parser


def serve(host: str | None, port: int | None, data_dir: Path | None) -> int:
    from bertd.app import create_app

    try:
        config = load_config(host=host, port=port, data_dir=data_dir)
    except ConfigError as error:
        print(f"bertd: {error}", file=sys.stderr)
        return 2
    setup_logging(config)
    logger.info("bertd {} starting", __version__)
    web.run_app(create_app(config), host=config.host, port=config.port, print=None,
                shutdown_timeout=config.stop_grace_seconds + 10)
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.command == "serve":
        return serve(arguments.host, arguments.port, arguments.data_dir)
    return 2
