"""The `bertd` command: `bertd serve` runs the server until SIGTERM or SIGINT; the other
subcommands are a client of a running server (see commands.py) and `bertd demo`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from aiohttp import web
from loguru import logger

from bertd import __version__
from bertd.cli.commands import add_client_commands, run_client_command
from bertd.cli.demo import add_demo_command, demo
from bertd.server.config import Config, ConfigError, load_config
from bertd.server.logs import setup_logging
from bertd.server.systemd import keep_watchdog_fed, notify, watchdog_interval


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertd", description="Fine-tune BERT text classifiers over a REST API.")
    parser.add_argument("--version", action="version", version=f"bertd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server (configuration from the environment)")
    serve.add_argument("--host", help="address to listen on (API_HOST, default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="TCP port (API_PORT, default 8000)")
    serve.add_argument("--data-dir", type=Path, help="uploads, models and database (DATA_DIR, default ./data)")
    add_client_commands(commands, dict(os.environ))
    add_demo_command(commands, dict(os.environ))
    return parser


async def run_server(config: Config) -> int:
    """Start (crash recovery first), report READY, wait for a signal, shut down in two phases."""
    from bertd.server.app import create_app
    from bertd.server.keys import SCHEDULER

    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=config.stop_grace_seconds + config.kill_wait_seconds + 5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
    except OSError as error:
        logger.error("cannot listen on {}:{}: {}", config.host, config.port, error)
        await runner.cleanup()
        return 1
    logger.info("bertd {} listening on http://{}:{}", __version__, config.host, config.port)
    notify("READY=1\nSTATUS=serving")

    stop = asyncio.Event()
    received: list[str] = []
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda s=signum: (received.append(signal.Signals(s).name), stop.set()))
    interval = watchdog_interval()
    watchdog = asyncio.create_task(keep_watchdog_fed(interval)) if interval else None

    await stop.wait()
    notify("STOPPING=1\nSTATUS=stopping running tasks")
    logger.info("{} received: no new tasks; stopping running ones (grace {:g} s)", received[0],
                config.stop_grace_seconds)
    app[SCHEDULER].begin_shutdown()
    # Closes the listener, then the WebSockets (1001), then the scheduler, callbacks and database.
    await runner.cleanup()
    if watchdog is not None:
        watchdog.cancel()
    return 0


def serve(host: str | None, port: int | None, data_dir: Path | None) -> int:
    try:
        config = load_config(host=host, port=port, data_dir=data_dir)
    except ConfigError as error:
        print(f"bertd: {error}", file=sys.stderr)
        return 2
    setup_logging(config)
    logger.info("bertd {} starting", __version__)
    try:
        return asyncio.run(run_server(config))
    except Exception as error:  # a refusal to start (corrupt database, unusable data dir) is one clear line
        logger.opt(exception=error).debug("start-up failed")
        logger.error("bertd cannot start: {}", error)
        return 1


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.command == "serve":
        return serve(arguments.host, arguments.port, arguments.data_dir)
    if arguments.command == "demo":
        return demo(arguments)
    return run_client_command(arguments)
