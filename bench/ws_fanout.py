"""WebSocket fan-out: N clients watch one real training task while progress flows at a fixed rate.

The subscribers run in this process (at nice 19 with --nice). Reports delivery latency
(p50/p99 of receive time minus the message's `at`), the server process's
CPU, and training samples/s with N subscribers against none, in the same run on the same server.

    python bench/ws_fanout.py --clients 0,100,500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime

import aiohttp
from common import machine_description, pin_cores, prepare_workload, running_server


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] if ordered else float("nan")


async def watch(session: aiohttp.ClientSession, url: str, latencies: list[float], counts: list[int]) -> None:
    async with session.ws_connect(url, max_msg_size=0) as ws:
        received = 0
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.time()
            text = message.data
            received += 1
            # Read `at` and the type without a full JSON parse: the clients share a core with the
            # server when pinned, and their own parsing time would count as delivery latency.
            start = text.find('"at": ')
            if start >= 0 and '"type": "snapshot"' not in text:
                end = text.find(",", start)
                latencies.append(now - float(text[start + 6 : end if end > 0 else text.find("}", start)]))
            if text.startswith('{"type": "end"'):
                break
        counts.append(received)


async def one_run(server, clients: int, body: dict) -> dict:
    task = server.request("POST", "/api/v1/training/tasks", body)
    task_id = task["task_id"]
    latencies: list[float] = []
    counts: list[int] = []
    ws_url = server.url.replace("http", "ws") + f"/api/v1/training/tasks/{task_id}/ws"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        watchers = [asyncio.create_task(watch(session, ws_url, latencies, counts)) for _ in range(clients)]
        while server.request("GET", f"/api/v1/training/tasks/{task_id}")["progress"]["phase"] != "training":
            await asyncio.sleep(0.1)
        cpu_start, wall_start = server.cpu_seconds(), time.monotonic()
        while server.request("GET", f"/api/v1/training/tasks/{task_id}")["status"] in ("queued", "training"):
            await asyncio.sleep(0.25)
        cpu_end, wall_end = server.cpu_seconds(), time.monotonic()
        await asyncio.gather(*watchers)
    done = server.wait_for(task_id, {"completed", "failed"})
    assert done["status"] == "completed", done["error_message"]
    return {
        "clients": clients,
        "samples_per_second": done["metrics"]["samples_per_second"],
        "messages_per_client": statistics.mean(counts) if counts else 0,
        "latency_p50_ms": 1000 * percentile(latencies, 0.5),
        "latency_p99_ms": 1000 * percentile(latencies, 0.99),
        "server_cpu_percent": 100 * (cpu_end - cpu_start) / (wall_end - wall_start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="0,100,500", help="comma-separated subscriber counts")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--report-interval", type=float, default=0.25, help="seconds between progress reports")
    parser.add_argument("--nice", action="store_true", help="run the subscribers at nice 19")
    parser.add_argument("--pin", action="store_true",
                        help="training on core 0; server and subscribers on core 1 (see common.pin_cores)")
    arguments = parser.parse_args()

    work, data, body = prepare_workload("fanout", arguments.rows, arguments.epochs)
    results = []
    pinning = {"WORKER_CPUS": "0"} if arguments.pin else {}
    with running_server(work / "data", PROGRESS_REPORT_INTERVAL=str(arguments.report_interval),
                        PROGRESS_WRITE_INTERVAL="1", **pinning) as server:
        server.upload(data)
        if arguments.pin:
            pin_cores(server)
        if arguments.nice:
            # The clients share the cores with the server and the training worker; at nice 19 they
            # take only idle CPU, as clients on other machines would. The server is not niced.
            os.nice(19)
        asyncio.run(one_run(server, 0, body))  # warm-up: page cache, first-import costs
        for clients in (int(n) for n in arguments.clients.split(",")):
            results.append(asyncio.run(one_run(server, clients, body)))
            print(json.dumps(results[-1]), flush=True)

    baseline = next((r["samples_per_second"] for r in results if r["clients"] == 0), None)
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {machine_description()}")
    print(f"`python bench/ws_fanout.py --clients {arguments.clients} --rows {arguments.rows} "
          f"--epochs {arguments.epochs} --report-interval {arguments.report_interval}"
          f"{' --nice' if arguments.nice else ''}{' --pin' if arguments.pin else ''}`\n")
    print("| clients | msgs/client | latency p50 | latency p99 | server CPU | training samples/s | vs no clients |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['samples_per_second'] / baseline:.3f}" if baseline else "-"
        print(f"| {r['clients']} | {r['messages_per_client']:.0f} | {r['latency_p50_ms']:.1f} ms | "
              f"{r['latency_p99_ms']:.1f} ms | {r['server_cpu_percent']:.1f}% | {r['samples_per_second']:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
