"""Benchmark qstash_local: publish through AsyncQStash.batch_json, deliver to a verifying sink.

Three processes on loopback, as in a real deployment: qstash_local (as ``jobtrail
qstash-dev`` would run it), a sink (a no-op aiohttp endpoint that checks every
``Upstash-Signature`` with ``qstash.Receiver``), and this publisher. Bounded in count and
time.

    python bench/qstash_local.py [--messages 20000] [--concurrency 2] [--workers 64]

Throughput comes from a flood of ``--messages``; latency p50/p99 from a second phase
paced at ``--paced-rate`` (a flood only measures the time spent queueing behind itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if sys.path[0] != ROOT:
    sys.path.insert(0, ROOT)  # `python bench/qstash_local.py` must import the package, not us

BATCH = 100
DEADLINE_S = 120.0


def _sink_main(conn: Connection, current: str, next_key: str) -> None:
    """Child process: serve the verifying no-op endpoint and report what arrived."""
    from aiohttp import web
    from qstash import Receiver

    receiver = Receiver(current, next_key)
    base = [""]
    latencies: dict[str, list[float]] = {"throughput": [], "paced": []}
    bad = [0]

    async def handle(request: web.BaseRequest) -> web.Response:
        if request.method == "GET":
            count = sum(len(v) for v in latencies.values())
            return web.json_response({"count": count, "bad": bad[0]})
        body = await request.read()
        arrived = time.time()
        text = body.decode()
        try:
            receiver.verify(
                signature=request.headers["Upstash-Signature"],
                body=text,
                url=base[0] + request.raw_path,
            )
        except Exception:
            bad[0] += 1
            return web.Response(status=401)
        payload = json.loads(text)
        latencies[payload["phase"]].append(arrived - payload["t"])
        return web.Response(text="ok")

    async def main() -> None:
        # aiohttp's low-level server: no router or middlewares, as befits a no-op endpoint.
        server = web.Server(handle, access_log=None)
        runner = web.ServerRunner(server)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        base[0] = f"http://127.0.0.1:{port}"
        conn.send(port)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send({"latencies": latencies, "bad": bad[0], "cpu_s": time.process_time()})
        await runner.cleanup()

    asyncio.run(main())


def _server_main(conn: Connection, workers: int, profile: str | None) -> None:
    """Child process: run qstash_local until told to stop (optionally under cProfile)."""
    sys.path.insert(0, ROOT)
    import qstash_local

    async def main() -> None:
        config = qstash_local.Config(delivery_workers=workers)
        async with qstash_local.serve(config, host="127.0.0.1", port=0) as server:
            conn.send(server.url)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)

    if profile:
        import cProfile

        with cProfile.Profile() as profiler:
            asyncio.run(main())
        profiler.dump_stats(profile)
    else:
        asyncio.run(main())
    conn.send(time.process_time())


def _items(url: str, phase: str, batch: range) -> list[Any]:
    now = time.time()
    return [{"url": url, "body": {"i": i, "t": now, "phase": phase}, "retries": 0} for i in batch]


async def _flood(client: Any, url: str, total: int, concurrency: int) -> float:
    """Publish ``total`` messages as fast as ``concurrency`` batch calls allow."""
    pending = iter([range(s, min(s + BATCH, total)) for s in range(0, total, BATCH)])

    async def lane() -> None:
        for batch in pending:
            await client.message.batch_json(_items(url, "throughput", batch))

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - started


async def _paced(client: Any, url: str, total: int, rate: float) -> None:
    """Publish ``total`` messages at ``rate`` per second, one batch at a time."""
    started = time.perf_counter()
    for n, start in enumerate(range(0, total, BATCH)):
        await asyncio.sleep(max(0.0, started + n * BATCH / rate - time.perf_counter()))
        await client.message.batch_json(
            _items(url, "paced", range(start, min(start + BATCH, total)))
        )


async def _drain(sink_port: int, expected: int, started: float) -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        while time.perf_counter() - started < DEADLINE_S:
            stats = (await http.get(f"http://127.0.0.1:{sink_port}/stats")).json()
            if stats["count"] + stats["bad"] >= expected:
                return
            await asyncio.sleep(0.02)


async def _run(args: argparse.Namespace, base_url: str, sink_port: int) -> tuple[float, float]:
    from qstash import AsyncQStash

    import qstash_local

    client = AsyncQStash(qstash_local.DEV_TOKEN, base_url=base_url, retry=False)
    url = f"http://127.0.0.1:{sink_port}/hook"
    try:
        started = time.perf_counter()
        publish_s = await _flood(client, url, args.messages, args.concurrency)
        await _drain(sink_port, args.messages, started)
        total_s = time.perf_counter() - started
        await _paced(client, url, args.paced_messages, args.paced_rate)
        await _drain(sink_port, args.messages + args.paced_messages, started)
    finally:
        await client.http._client.aclose()
    return publish_s, total_s


def _child(target: Any, *args: Any) -> tuple[multiprocessing.process.BaseProcess, Connection]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=target, args=(child, *args))
    process.start()
    return process, parent


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _report(
    args: argparse.Namespace, publish_s: float, total_s: float, sink: dict[str, Any]
) -> None:
    flood_ms = [x * 1000 for x in sink["latencies"]["throughput"]]
    paced_ms = [x * 1000 for x in sink["latencies"]["paced"]]
    delivered = len(flood_ms)
    print(f"machine: {multiprocessing.cpu_count()} cores; messages: {args.messages}")
    print(f"published {args.messages} in {publish_s:.2f}s; delivered {delivered} in {total_s:.2f}s")
    print(f"signature failures at the sink: {sink['bad']}")
    server_cpu, sink_cpu = sink["server_cpu_s"], sink["cpu_s"]
    total = args.messages + args.paced_messages
    print(
        f"CPU: qstash_local {server_cpu:.1f}s ({server_cpu / total * 1e6:.0f} us/msg), "
        f"sink {sink_cpu:.1f}s ({sink_cpu / total * 1e6:.0f} us/msg); other load on "
        "the machine lowers the wall-clock rates below"
    )
    print(f"BENCH qstash_local_published_per_s {args.messages / publish_s:.0f} msg/s")
    print(f"BENCH qstash_local_delivered_per_s {delivered / total_s:.0f} msg/s")
    print(
        f"latency while flooding (queueing behind the backlog): p50 "
        f"{_percentile(flood_ms, 50):.0f} ms, p99 {_percentile(flood_ms, 99):.0f} ms"
    )
    print(f"latency at a paced {args.paced_rate:.0f} msg/s ({len(paced_ms)} messages):")
    print(f"BENCH qstash_local_latency_p50_ms {_percentile(paced_ms, 50):.1f} ms")
    print(f"BENCH qstash_local_latency_p99_ms {_percentile(paced_ms, 99):.1f} ms")
    if delivered < args.messages or len(paced_ms) < args.paced_messages or sink["bad"]:
        sys.exit(1)


def main() -> None:
    """Run the benchmark and print human lines plus ``BENCH`` lines."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2, help="batch calls in flight")
    parser.add_argument("--workers", type=int, default=64, help="qstash_local delivery workers")
    parser.add_argument("--paced-messages", type=int, default=5_000)
    parser.add_argument("--paced-rate", type=float, default=1000.0, help="msg/s, latency phase")
    parser.add_argument("--profile", help="write a cProfile of the server process here")
    args = parser.parse_args()

    import qstash_local

    keys = (qstash_local.DEV_CURRENT_SIGNING_KEY, qstash_local.DEV_NEXT_SIGNING_KEY)
    sink, sink_conn = _child(_sink_main, *keys)
    server, server_conn = _child(_server_main, args.workers, args.profile)
    try:
        sink_port, base_url = sink_conn.recv(), server_conn.recv()
        publish_s, total_s = asyncio.run(_run(args, base_url, sink_port))
        sink_conn.send("done")
        report = sink_conn.recv()
        server_conn.send("stop")
        report["server_cpu_s"] = server_conn.recv()
    finally:
        for process in (sink, server):
            process.join(10)
            if process.is_alive():
                process.kill()
    _report(args, publish_s, total_s, report)


if __name__ == "__main__":
    main()
