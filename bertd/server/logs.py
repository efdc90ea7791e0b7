"""Logging setup: loguru to stderr (journald picks it up), optionally to a rotated file."""

from __future__ import annotations

import logging
import sys

from loguru import logger

from bertd.server.config import Config

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {name}:{line} | {message}"


class _InterceptHandler(logging.Handler):
    """Route the standard library's records (aiohttp's access log, transformers) into loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def setup_logging(config: Config) -> None:
    logger.remove()
    logger.add(sys.stderr, level=config.log_level, format=FORMAT, backtrace=False, diagnose=False)
    if config.log_file is not None:
        config.log_file.parent.mkdir(parents=True, exist_ok=True)
        logger.add(config.log_file, level=config.log_level, format=FORMAT, rotation="50 MB", retention=10,
                   compression="gz", enqueue=True, backtrace=False, diagnose=False)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.WARNING, force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if config.log_level in ("DEBUG", "TRACE") else logging.WARNING)


def setup_worker_logging(level: str) -> None:
    """A `bertd worker` logs like the server: loguru to stderr, Celery's own lines routed into it."""
    logger.remove()
    logger.add(sys.stderr, level=level, format=FORMAT, backtrace=False, diagnose=False)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
