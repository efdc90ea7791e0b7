"""The API node's view of the worker boxes: their heartbeats in Redis (one key per box, with a TTL)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from bertd.cluster.contract import DEAD_AFTER_SECONDS, heartbeat_key


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    slots: int
    busy: int
    gpus: list[dict[str, Any]]
    version: str
    protocol: int
    last_heartbeat: float  # Unix seconds

    @property
    def alive(self) -> bool:
        return time.time() - self.last_heartbeat < DEAD_AFTER_SECONDS

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "slots": self.slots, "busy": self.busy, "gpus": self.gpus,
                "version": self.version, "protocol": self.protocol, "alive": self.alive,
                "last_heartbeat": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_heartbeat))}


def _parse(raw: bytes | str | None) -> WorkerInfo | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return WorkerInfo(name=data["name"], slots=int(data["slots"]), busy=int(data["busy"]), gpus=data["gpus"],
                          version=data["version"], protocol=int(data["protocol"]),
                          last_heartbeat=float(data["at"]))
    except (ValueError, KeyError, TypeError):
        return None


class WorkerDirectory:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def workers(self) -> list[WorkerInfo]:
        keys = [key async for key in self._redis.scan_iter(match=heartbeat_key("*"), count=100)]
        found = [_parse(raw) for raw in (await self._redis.mget(keys) if keys else [])]
        return sorted((info for info in found if info is not None), key=lambda info: info.name)

    async def worker(self, name: str) -> WorkerInfo | None:
        return _parse(await self._redis.get(heartbeat_key(name)))
