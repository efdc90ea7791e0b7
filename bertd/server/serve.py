"""`bertd serve`: start (crash recovery first), tell systemd, wait for a signal, shut down in two
phases: stop admitting, then stop running tasks within the grace period."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from aiohttp import web
from loguru import logger

from bertd import __version__
from bertd.server.app import create_app
from bertd.server.config import Config, ConfigError, load_config
from bertd.server.keys import SCHEDULER
from bertd.server.logs import setup_logging
from bertd.server.systemd import keep_watchdog_fed, notify, watchdog_interval


async def run_server(config: Config) -> int:
    """Start (crash recovery first), report READY, wait for a signal, shut down in two phases."""
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
    # huggingface_hub reads this once, at import: without it a server's first pull would also ask
    # https://huggingface.co (not HF_ENDPOINT) for a list of "agent harnesses", waiting up to 3 s
    # where that site cannot be reached. Set HF_HUB_DISABLE_TELEMETRY=0 to keep the library's default.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
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
