"""WebSocket fan-out: N clients watch one real training task while progress flows at a fixed rate.

The subscribers run in this process (at nice 19 with --nice). By default each is a minimal
WebSocket client on a bare asyncio protocol (handshake, frame split, `at` read, pong, close), so
the load generator costs little next to the server it measures; `--client aiohttp` uses aiohttp's
client instead, as an application would. Reports delivery latency
(p50/p99 of receive time minus the message's `at`, once every client has its snapshot; the p99 of
messages published while clients were still connecting is reported apart), the server process's
CPU, and training samples/s with N subscribers against none, in the same run on the same server.

    python bench/ws_fanout.py --clients 0,100,500
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import statistics
import time
from datetime import UTC, datetime

import aiohttp
from common import figure, machine_description, pin_cores, prepare_workload, running_server


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] if ordered else float("nan")


async def watch(session: aiohttp.ClientSession, url: str, latencies: list[tuple[float, float, str]],
                snapshots: list[float], counts: list[int]) -> None:
    async with session.ws_connect(url, max_msg_size=0) as ws:
        received = 0
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.time()
            text = message.data
            received += 1
            record(text, now, latencies, snapshots)
            if text.startswith('{"type": "end"'):
                break
        counts.append(received)


def record(text: bytes | str, now: float, latencies: list[tuple[float, float, str]], snapshots: list[float]) -> None:
    """Note (publish time, receive time minus the message's `at`), or the arrival of a snapshot.
    Read without a full JSON parse: the clients share the machine with the server, and their own
    parsing time would count as delivery latency."""
    data = text.encode() if isinstance(text, str) else text
    if data.startswith(b'{"type": "snapshot"'):
        snapshots.append(now)
        return
    start = data.find(b'"at": ')
    if start < 0:
        return
    end = data.find(b",", start)
    if end < 0:
        end = data.find(b"}", start)
    published = float(data[start + 6 : end])
    latencies.append((published, now - published, data[10 : data.find(b'"', 10)].decode()))


class RawWatcher(asyncio.Protocol):
    """One subscriber as a bare protocol: no task, no message objects, one callback per read."""

    def __init__(self, host: str, path: str, latencies: list[tuple[float, float, str]], snapshots: list[float],
                 counts: list[int]) -> None:
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.latencies, self.snapshots, self.counts = latencies, snapshots, counts
        self.buffer = bytearray()
        self.upgraded = False
        self.received = 0
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"upgrade refused: {bytes(buffer[:head_end])!r}")
            del buffer[: head_end + 4]
            self.upgraded = True
        while len(buffer) >= 2:
            opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            self.frame(opcode, payload, now)

    def send(self, opcode: int, payload: bytes) -> None:
        # Client frames must be masked; an all-zero mask leaves the payload as it is.
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + b"\0\0\0\0" + payload)

    def frame(self, opcode: int, payload: bytes, now: float) -> None:
        if opcode == 0x1:
            self.received += 1
            record(payload, now, self.latencies, self.snapshots)
            if payload.startswith(b'{"type": "end"'):
                self.send(0x8, (1000).to_bytes(2, "big"))
        elif opcode == 0x9:
            self.send(0xA, payload)
        elif opcode == 0x8:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.counts.append(self.received)
        if not self.done.done():
            self.done.set_result(None)


async def watch_raw(url: str, latencies: list[tuple[float, float, str]], snapshots: list[float], counts: list[int]) -> None:
    host_port, _, path = url.removeprefix("ws://").partition("/")
    host, _, port = host_port.partition(":")
    loop = asyncio.get_running_loop()
    _, watcher = await loop.create_connection(lambda: RawWatcher(host_port, "/" + path, latencies, snapshots, counts),
                                              host, int(port))
    await watcher.done


async def one_run(server, clients: int, body: dict, client_kind: str = "raw", late: bool = False) -> dict:
    task = server.request("POST", "/api/v1/training/tasks", body)
    task_id = task["task_id"]
    latencies: list[tuple[float, float, str]] = []
    snapshots: list[float] = []
    counts: list[int] = []
    ws_url = server.url.replace("http", "ws") + f"/api/v1/training/tasks/{task_id}/ws"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        def connect_all() -> list[asyncio.Task]:
            return [asyncio.create_task(watch(session, ws_url, latencies, snapshots, counts) if client_kind == "aiohttp"
                                        else watch_raw(ws_url, latencies, snapshots, counts)) for _ in range(clients)]

        watchers = [] if late else connect_all()
        while server.request("GET", f"/api/v1/training/tasks/{task_id}")["progress"]["phase"] != "training":
            await asyncio.sleep(0.1)
        if late:  # the connect storm: every client arrives at once while live messages flow
            watchers = connect_all()
        cpu_start, wall_start, client_cpu_start = server.cpu_seconds(), time.monotonic(), time.process_time()
        while server.request("GET", f"/api/v1/training/tasks/{task_id}")["status"] in ("queued", "training"):
            await asyncio.sleep(0.25)
        cpu_end, wall_end, client_cpu_end = server.cpu_seconds(), time.monotonic(), time.process_time()
        await asyncio.gather(*watchers)
    done = server.wait_for(task_id, {"completed", "failed"})
    assert done["status"] == "completed", done["error_message"]
    all_connected = max(snapshots, default=0.0)
    slowest: dict[tuple[float, str], float] = {}
    for published, latency, kind in latencies:
        slowest[published, kind] = max(latency, slowest.get((published, kind), 0.0))
    if slowest:
        first = min(published for published, _ in slowest)
        worst = sorted(slowest.items(), key=lambda item: -item[1])[:5]
        # Which publishes were late, at what second of the run: spikes that line up with epoch ends
        # (evaluation, saving) or with the connect storm read differently from a steady tail.
        described = (f"{published - first:.1f} {kind}: {1000 * latency:.0f}" for (published, kind), latency in worst)
        print("slowest publishes (second of run, type: worst latency ms):", ", ".join(described), flush=True)
    steady = [latency for published, latency, _ in latencies if published > all_connected]
    connecting = [latency for published, latency, _ in latencies if published <= all_connected]
    return {
        "clients": clients,
        "samples_per_second": done["metrics"]["samples_per_second"],
        "messages_per_client": statistics.mean(counts) if counts else 0,
        "latency_p50_ms": 1000 * percentile(steady, 0.5),
        "latency_p99_ms": 1000 * percentile(steady, 0.99),
        # While clients are still connecting, live messages wait behind the snapshots.
        "connecting_p99_ms": 1000 * percentile(connecting, 0.99),
        "server_cpu_percent": 100 * (cpu_end - cpu_start) / (wall_end - wall_start),
        # This process: the subscribers plus the status polling every run does.
        "client_cpu_percent": 100 * (client_cpu_end - client_cpu_start) / (wall_end - wall_start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="0,100,500", help="comma-separated subscriber counts")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--report-interval", type=float, default=0.25, help="seconds between progress reports")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                        help="subscriber implementation (raw: bare asyncio protocol)")
    parser.add_argument("--nice", action="store_true", help="run the subscribers at nice 19")
    parser.add_argument("--late", action="store_true",
                        help="connect the clients all at once after training has started (the connect storm)")
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
            # The subscribers' process keeps tens of thousands of latency records: a full garbage
            # collection pass over them would show up as delivery latency that the server did not cause.
            gc.collect()
            gc.disable()
            results.append(asyncio.run(one_run(server, clients, body, arguments.client, arguments.late)))
            gc.enable()
            print(json.dumps(results[-1]), flush=True)

    # Against the mean of every run without clients: this VM drifts several percent between runs,
    # so interleave runs with and without clients (e.g. --clients 0,500,0,500,0).
    quiet = [r["samples_per_second"] for r in results if r["clients"] == 0]
    baseline = statistics.mean(quiet) if quiet else None
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {machine_description()}")
    print(f"`python bench/ws_fanout.py --clients {arguments.clients} --rows {arguments.rows} "
          f"--epochs {arguments.epochs} --report-interval {arguments.report_interval} --client {arguments.client}"
          f"{' --nice' if arguments.nice else ''}{' --pin' if arguments.pin else ''}{' --late' if arguments.late else ''}`\n")
    print("| clients | msgs/client | latency p50 | latency p99 | p99 while connecting | server CPU | client CPU "
          "| training samples/s | vs no clients |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['samples_per_second'] / baseline:.3f}" if baseline else "-"
        print(f"| {r['clients']} | {r['messages_per_client']:.0f} | {figure(r['latency_p50_ms'], 'ms')} | "
              f"{figure(r['latency_p99_ms'], 'ms')} | {figure(r['connecting_p99_ms'], 'ms')} | "
              f"{r['server_cpu_percent']:.1f}% | {r['client_cpu_percent']:.1f}% | "
              f"{r['samples_per_second']:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
