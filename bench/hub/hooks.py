"""What hooks and channel events cost the hub: connects/s and subscribes/s with hooks off, on
with cached subscribe grants, and on without caching; and the hub CPU that channel events add per
1 000 deliveries. One hub process (memory broker) per configuration, the same load for each, in
one run; CPU from /proc (the hub's and the application's).

    python bench/hub/hooks.py [--connects 400] [--subscribes 2000] [--deliveries 40000]

The application is this file run with ``--app PORT``: it allows everything, marks subscribe grants
cacheable except on ``nocache:`` channels, and takes events. The load is a raw Engine.IO v4 client
on aiohttp websockets (cheaper than a socket.io client library, so the hub is what is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import Procs, cpu_seconds, free_port, limpet_argv, limpet_env, loadavg


def run_app(port: int) -> None:
    from aiohttp import web

    async def hook(request: web.Request) -> web.Response:
        doc = await request.json()
        name = request.match_info["hook"]
        if name == "connect":
            return web.json_response({"result": {"user": "bench"}})
        if name == "subscribe":
            cache = not doc.get("channel", "").startswith("nocache:")
            return web.json_response({"result": {"cache": cache}})
        return web.json_response({"result": {}})

    async def events(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hooks/{hook}", hook)
    app.router.add_post("/events", events)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class Conn:
    """One raw socket.io connection: acks by id, a count of "message" events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.messages = 0
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str) -> Conn:
        ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
        assert (await ws.receive_str()).startswith("0")
        await ws.send_str("40")
        answer = await ws.receive_str()
        if not answer.startswith("40"):
            raise RuntimeError(f"connect refused: {answer}")
        return cls(ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            text = msg.data
            if text == "2":
                await self.ws.send_str("3")
            elif text.startswith("42"):
                self.messages += 1
            elif text.startswith("43"):
                i = 2
                while text[i].isdigit():
                    i += 1
                future = self.acks.pop(int(text[2:i]), None)
                if future is not None:
                    future.set_result(json.loads(text[i:])[0])

    async def call(self, event: str, data: Any) -> Any:
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.acks[self.next_id] = future
        await self.ws.send_str(f"42{self.next_id}" + json.dumps([event, data]))
        return await future

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


async def connects(url: str, count: int, concurrency: int) -> float:
    async with aiohttp.ClientSession() as http:
        todo = iter(range(count))

        async def worker() -> None:
            for _ in todo:
                conn = await Conn.open(http, url)
                await conn.close()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - start)


async def subscribes(url: str, count: int, concurrency: int, prefix: str) -> float:
    async with aiohttp.ClientSession() as http:
        conns = [await Conn.open(http, url) for _ in range(concurrency)]
        per = count // concurrency

        async def cycle(i: int, conn: Conn) -> None:
            channel = f"{prefix}{i}"
            for _ in range(per):
                ack = await conn.call("subscribe", {"channel": channel})
                assert "error" not in ack, ack
                await conn.call("unsubscribe", {"channel": channel})

        start = time.perf_counter()
        await asyncio.gather(*(cycle(i, c) for i, c in enumerate(conns)))
        rate = per * concurrency / (time.perf_counter() - start)
        for conn in conns:
            await conn.close()
        return rate


async def deliveries(url: str, hub_pid: int, subscribers: int, messages: int) -> float:
    """Hub CPU seconds for ``messages`` publishes to ``subscribers`` (subscribed first)."""
    async with aiohttp.ClientSession() as http:
        subs = [await Conn.open(http, url) for _ in range(subscribers)]
        for conn in subs:
            await conn.call("subscribe", {"channel": "events-bench"})
        publisher = await Conn.open(http, url)
        await asyncio.sleep(0.5)
        before = cpu_seconds(hub_pid)
        window = 50
        for start in range(0, messages, window):
            await asyncio.gather(*(
                publisher.call("publish", {"channel": "events-bench", "data": {"n": n}})
                for n in range(start, min(messages, start + window))
            ))  # fmt: skip
        deadline = time.monotonic() + 60
        while sum(c.messages for c in subs) < subscribers * messages:
            if time.monotonic() > deadline:
                raise RuntimeError("deliveries did not all arrive")
            await asyncio.sleep(0.01)
        used = cpu_seconds(hub_pid) - before
        for conn in [*subs, publisher]:
            await conn.close()
        return used


def start_hub(procs: Procs, name: str, *extra: str) -> tuple[str, Any]:
    port = free_port()
    argv = limpet_argv("hub", "--listen", f"127.0.0.1:{port}", "--name", name,
                       "--subscribes-per-second", "0", "--publishes-per-second", "0",
                       "--channels-per-client", "0", *extra)  # fmt: skip
    proc = procs.start(name, argv, limpet_env(), port=port)
    return f"http://127.0.0.1:{port}", proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connects", type=int, default=400)
    parser.add_argument("--subscribes", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    if args.app:
        run_app(args.app)
        return
    logdir = Path("bench/results/hooks-logs")
    logdir.mkdir(parents=True, exist_ok=True)
    procs = Procs(logdir)
    try:
        app_port = free_port()
        app = procs.start("app", [sys.executable, __file__, "--app", str(app_port)], port=app_port)
        hook = ["--hook-url", f"http://127.0.0.1:{app_port}/hooks"]
        events = ["--events-url", f"http://127.0.0.1:{app_port}/events"]
        print(f"load average before: {loadavg()}  (shared machine)")
        rows = []
        for label, extra, prefix in [
            ("hooks off", [], "c:"),
            ("hooks on, subscribe cached", hook, "c:"),
            ("hooks on, not cached", hook, "nocache:"),
        ]:
            url, hub = start_hub(procs, label.replace(" ", "-").replace(",", ""), *extra)
            hub_cpu = cpu_seconds(hub.pid)
            c_rate = asyncio.run(connects(url, args.connects, args.concurrency))
            mid_hub, mid_app = cpu_seconds(hub.pid), cpu_seconds(app.pid)
            s_rate = asyncio.run(subscribes(url, args.subscribes, args.concurrency, prefix))
            end_hub, end_app = cpu_seconds(hub.pid), cpu_seconds(app.pid)
            rows.append((label, c_rate, (mid_hub - hub_cpu) / args.connects * 1e6,
                         s_rate, (end_hub - mid_hub) / args.subscribes * 1e6,
                         (end_app - mid_app) / args.subscribes * 1e6))  # fmt: skip
            procs.stop([hub])
        print()
        print(
            "| hub | connects/s | hub CPU µs/connect | subscribes/s | hub CPU µs/subscribe | app CPU µs/subscribe |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for label, c, cc, s, sc, ac in rows:
            print(f"| {label} | {c:,.0f} | {cc:,.0f} | {s:,.0f} | {sc:,.0f} | {ac:,.0f} |")
        used = {}
        for label, extra in [("events off", []), ("events on", events)]:
            url, hub = start_hub(procs, label.replace(" ", "-"), *extra)
            used[label] = asyncio.run(deliveries(url, hub.pid, args.subscribers, args.messages))
            procs.stop([hub])
        total = args.subscribers * args.messages
        print()
        print(f"{args.messages} publishes to {args.subscribers} subscribers = {total} deliveries")
        print("| hub | CPU s | CPU ms per 1 000 deliveries |")
        print("|---|---:|---:|")
        for label, cpu in used.items():
            print(f"| {label} | {cpu:.2f} | {cpu / total * 1e6:.1f} |")
        added = (used["events on"] - used["events off"]) / total * 1e3 * 1e3
        print(f"events add {added:.1f} ms of hub CPU per 1 000 deliveries "
              f"({(used['events on'] - used['events off']) / args.messages * 1e6:.0f} µs per "
              f"publish event)")  # fmt: skip
        print(f"load average after: {loadavg()}")
    finally:
        procs.close()


if __name__ == "__main__":
    main()
