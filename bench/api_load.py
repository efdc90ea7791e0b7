"""API under load: 200 clients poll task detail and the task list for 30 s while two tasks train.

Reports request latency p50/p99, errors, and training samples/s against the same two tasks trained
with no load, in the same run on the same server.

    python bench/api_load.py --clients 200 --seconds 30 [--interval 0.5]

With --interval 0 every client sends its next request as soon as the last is answered: a
saturation test, where latency is concurrency divided by throughput. With --interval 0.5 each
client polls twice a second, as a dashboard or script would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from datetime import UTC, datetime

import aiohttp
from common import machine_description, pin_cores, prepare_workload, running_server
from ws_fanout import percentile


async def poll(session: aiohttp.ClientSession, base: str, task_ids: list[str], until: float, interval: float,
               latencies: list[float], errors: list[str]) -> None:
    turn = 0
    await asyncio.sleep(random.uniform(0, interval))  # spread the clients' phases
    while time.monotonic() < until:
        if interval:
            await asyncio.sleep(interval)
        turn += 1
        path = (f"/api/v1/training/tasks/{task_ids[turn % len(task_ids)]}" if turn % 2
                else "/api/v1/training/tasks?page_size=20")
        started = time.perf_counter()
        try:
            async with session.get(base + path) as response:
                await response.read()
                if response.status != 200:
                    errors.append(f"HTTP {response.status}")
        except Exception as error:  # counted, not raised: the point is to see them
            errors.append(type(error).__name__)
        latencies.append(time.perf_counter() - started)


def train_two(server, body: dict) -> list[str]:
    return [server.request("POST", "/api/v1/training/tasks", body)["task_id"] for _ in range(2)]


def wait_training(server, task_ids: list[str]) -> None:
    while not all(server.request("GET", f"/api/v1/training/tasks/{t}")["progress"]["phase"] == "training"
                  for t in task_ids):
        time.sleep(0.2)


def speeds(server, task_ids: list[str]) -> list[float]:
    return [server.wait_for(t, {"completed"})["metrics"]["samples_per_second"] for t in task_ids]


async def load(server, task_ids: list[str], clients: int, seconds: float, interval: float
               ) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    until = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(poll(session, server.url, task_ids, until, interval, latencies, errors) for _ in range(clients)))
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pin", action="store_true",
                        help="training on core 0; server and clients on core 1 (see common.pin_cores)")
    parser.add_argument("--interval", type=float, default=0.0,
                        help="seconds each client waits between requests (0: as fast as it can)")
    arguments = parser.parse_args()

    work, data, body = prepare_workload("load", arguments.rows, arguments.epochs)
    pinning = {"WORKER_CPUS": "0"} if arguments.pin else {}
    with running_server(work / "data", MAX_CONCURRENT_TASKS="2", **pinning) as server:
        server.upload(data)
        if arguments.pin:
            pin_cores(server)
        quiet = train_two(server, body)
        quiet_speed = sum(speeds(server, quiet))
        loaded = train_two(server, body)
        wait_training(server, loaded)
        cpu_before = server.cpu_seconds()
        latencies, errors = asyncio.run(load(server, loaded, arguments.clients, arguments.seconds,
                                             arguments.interval))
        server_cpu = 100 * (server.cpu_seconds() - cpu_before) / arguments.seconds
        loaded_speed = sum(speeds(server, loaded))

    result = {
        "clients": arguments.clients, "seconds": arguments.seconds, "requests": len(latencies),
        "errors": len(errors), "error_kinds": sorted(set(errors)),
        "latency_p50_ms": 1000 * percentile(latencies, 0.5), "latency_p99_ms": 1000 * percentile(latencies, 0.99),
        "server_cpu_percent": server_cpu,
        "samples_per_second_quiet": quiet_speed, "samples_per_second_loaded": loaded_speed,
    }
    print(json.dumps(result))
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {machine_description()}")
    print(f"`python bench/api_load.py --clients {arguments.clients} --seconds {arguments.seconds:g} "
          f"--rows {arguments.rows} --epochs {arguments.epochs} --interval {arguments.interval:g}"
          f"{' --pin' if arguments.pin else ''}`\n")
    print("| clients | requests | errors | p50 | p99 | server CPU | samples/s quiet | samples/s loaded | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {arguments.clients} | {len(latencies)} | {len(errors)} | {result['latency_p50_ms']:.1f} ms | "
          f"{result['latency_p99_ms']:.1f} ms | {server_cpu:.0f}% | {quiet_speed:.1f} | {loaded_speed:.1f} | "
          f"{loaded_speed / quiet_speed:.3f} |")


if __name__ == "__main__":
    main()
