"""Callback delivery: POST a JSON body to the task's callback_url with retries and a signature.

Deliveries run as background tasks, one task's callbacks in order, and never touch the task's
status. Signatures follow the Standard Webhooks scheme (see README)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from loguru import logger

RecordOutcome = Callable[[str, dict[str, Any], dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class CallbackPolicy:
    timeout_seconds: float
    max_attempts: int
    backoff_seconds: float
    secret: str | None
    block_private: bool = False


class CallbackRefused(Exception):
    """The target may never be called (e.g. a private address while those are blocked): no retry."""


async def check_public_target(url: str) -> None:
    """Refuse a URL whose host resolves to a loopback, private, link-local or reserved address."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError as error:
        raise RuntimeError(f"cannot resolve {host}: {error}") from error
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise CallbackRefused(f"refused: {host} resolves to the non-public address {address} "
                                  "(CALLBACK_BLOCK_PRIVATE is on)")


def signature_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers: HMAC-SHA256 over "{id}.{timestamp}.{body}", base64, prefixed "v1,"."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


class CallbackSender:
    def __init__(self, policy: CallbackPolicy, record: RecordOutcome) -> None:
        self._policy = policy
        self._record = record
        self._session: aiohttp.ClientSession | None = None
        self._per_task_locks: dict[str, asyncio.Lock] = {}
        self._deliveries: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._policy.timeout_seconds))

    async def close(self, wait_seconds: float = 2.0) -> None:
        if self._deliveries:
            await asyncio.wait(self._deliveries, timeout=wait_seconds)
        for delivery in list(self._deliveries):
            delivery.cancel()
        if self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def send(self, task_id: str, url: str, payload: dict[str, Any]) -> None:
        """Schedule a delivery; returns at once."""
        delivery = asyncio.create_task(self._deliver(task_id, url, payload), name=f"callback-{task_id[:8]}")
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)

    async def _post(self, url: str, body: bytes) -> None:
        assert self._session is not None
        if self._policy.block_private:
            await check_public_target(url)
        headers = {"Content-Type": "application/json", "User-Agent": "bertd"}
        if self._policy.secret:
            headers.update(signature_headers(self._policy.secret, f"msg_{uuid.uuid4().hex}", int(time.time()), body))
        async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            if response.status >= 300:
                raise RuntimeError(f"HTTP {response.status}")

    async def _deliver(self, task_id: str, url: str, payload: dict[str, Any]) -> None:
        lock = self._per_task_locks.setdefault(task_id, asyncio.Lock())
        async with lock:
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            event = payload["event"]
            last_error: str | None = None
            refused = False
            for attempt in range(1, self._policy.max_attempts + 1):
                try:
                    await self._post(url, body)
                    last_error = None
                except CallbackRefused as error:
                    last_error = str(error)
                    refused = True
                except Exception as error:  # every failure is retried: timeouts, refusals, 5xx
                    last_error = str(error) or type(error).__name__
                    if isinstance(error, asyncio.TimeoutError):
                        last_error = f"timed out after {self._policy.timeout_seconds:g} s"
                done = last_error is None or refused or attempt == self._policy.max_attempts
                state = {
                    "status": "delivered" if last_error is None else ("failed" if done else "retrying"),
                    "attempts": attempt,
                    "last_error": last_error,
                    "event": event,
                }
                await self._record(task_id, state, {"event": event, "attempt": attempt, "url": url,
                                                    "ok": last_error is None, "error": last_error})
                if done:
                    break
                await asyncio.sleep(self._policy.backoff_seconds * 2 ** (attempt - 1))
            if last_error is not None:
                logger.warning("task {} callback {} to {} failed after {} attempt(s): {}", task_id, event, url,
                               attempt, last_error)
        if not lock.locked() and not lock._waiters:  # type: ignore[attr-defined]
            self._per_task_locks.pop(task_id, None)
