"""tractor's side of the comparison (benches/compare/run.sh).

The same four workloads, with the same counts, as benches/compare_ours.rs;
one machine-readable line per workload on stdout:

    RESULT {"workload": "spawn_one", "value": 178.2, "unit": "ms", ...}

- spawn_one: open an actor nursery, run_in_actor one trivial function, await
  its result, close the nursery; median of 9 runs after 1 warm-up.
- spawn_20: the same with 20 actors in one nursery, until every result is in
  and the nursery is closed; median of 3 runs with the 20 run_in_actor calls
  awaited one after another (tractor's idiom) and median of 3 runs with each
  in its own trio task; the faster of the two counts.
- rtt: 10,000 sequential portal.run(echo, x=i) calls to a daemon actor (after
  100 warm-up calls); median per call, and total / 10,000.
- stream: 100,000 items of 64 bytes from a daemon's async generator via
  portal.open_stream_from (after a 1,000-item warm-up stream); median items/s
  of 3 runs.

Written for tractor 0.1.0a5 with trio 0.22. The registry (arbiter) listens on
--arbiter-port (default: a free ephemeral port), never tractor's default 1616.

Run: python tractor_bench.py [--arbiter-port P] [workload ...]
"""
import argparse
import json
import socket
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")

import trio  # noqa: E402
import tractor  # noqa: E402


async def trivial(i: int) -> int:
    return i


async def echo(x: int) -> int:
    return x


async def produce(count: int, size: int):
    item = b"\x07" * size
    for _ in range(count):
        yield item


def result(workload, value, unit, **extra):
    line = {"workload": workload, "value": round(value, 3), "unit": unit}
    line.update(extra)
    print("RESULT " + json.dumps(line), flush=True)


async def spawn_round(parallel: int, concurrent: bool = False) -> float:
    t = time.perf_counter()
    async with tractor.open_nursery() as an:
        portals = [None] * parallel

        async def spawn(i):
            portals[i] = await an.run_in_actor(
                trivial, name=f"w{i}", i=i,
            )

        if not concurrent:
            for i in range(parallel):
                await spawn(i)
        else:
            async with trio.open_nursery() as tn:
                for i in range(parallel):
                    tn.start_soon(spawn, i)
        for i, p in enumerate(portals):
            got = await p.result()
            assert got == i, (got, i)
    return (time.perf_counter() - t) * 1e3


async def spawn_one():
    await spawn_round(1)  # warm-up
    runs = [await spawn_round(1) for _ in range(9)]
    result("spawn_one", statistics.median(runs), "ms",
           runs=[round(r, 3) for r in runs])


async def spawn_20():
    # Both ways of filling the nursery; the faster one counts.
    seq = [await spawn_round(20) for _ in range(3)]
    conc = [await spawn_round(20, concurrent=True) for _ in range(3)]
    best = min(statistics.median(seq), statistics.median(conc))
    result("spawn_20", best, "ms",
           mode="sequential" if best == statistics.median(seq)
           else "concurrent",
           sequential=[round(r, 3) for r in seq],
           concurrent=[round(r, 3) for r in conc])


async def rtt(portal):
    for i in range(100):
        await portal.run(echo, x=i)
    calls = 10_000
    each = []
    total = time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        x = await portal.run(echo, x=i)
        each.append((time.perf_counter() - t) * 1e6)
        assert x == i
    mean = (time.perf_counter() - total) * 1e6 / calls
    result("rtt", statistics.median(each), "us", mean_us=round(mean, 3),
           calls=calls)


async def stream(portal):
    async def one(count):
        t = time.perf_counter()
        got = 0
        async with portal.open_stream_from(produce, count=count, size=64) as s:
            async for item in s:
                assert len(item) == 64
                got += 1
        assert got == count, (got, count)
        return count / (time.perf_counter() - t)

    await one(1_000)  # warm-up
    count = 100_000
    runs = [await one(count) for _ in range(3)]
    result("stream", statistics.median(runs), "items/s", items=count,
           runs=[round(r, 1) for r in runs])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main(args):
    want = lambda w: not args.workloads or w in args.workloads  # noqa: E731
    async with tractor.open_root_actor(
        arbiter_addr=("127.0.0.1", args.arbiter_port),
        name="bench_root",
        loglevel=args.loglevel,
    ):
        if want("spawn_one"):
            await spawn_one()
        if want("spawn_20"):
            await spawn_20()
        if want("rtt") or want("stream"):
            async with tractor.open_nursery() as an:
                daemon = await an.start_actor(
                    "daemon", enable_modules=[__name__],
                )
                if want("rtt"):
                    await rtt(daemon)
                if want("stream"):
                    await stream(daemon)
                await daemon.cancel_actor()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--arbiter-port", type=int, default=0,
                    help="registry port (default: a free ephemeral port)")
    ap.add_argument("--loglevel", default="error")
    ap.add_argument("workloads", nargs="*",
                    help="any of spawn_one spawn_20 rtt stream (default all)")
    args = ap.parse_args()
    known = {"spawn_one", "spawn_20", "rtt", "stream"}
    if set(args.workloads) - known:
        ap.error(f"unknown workloads {set(args.workloads) - known}")
    if args.arbiter_port == 0:
        args.arbiter_port = free_port()
    if args.arbiter_port == 1616:
        sys.exit("refusing tractor's default arbiter port 1616")
    print(f"tractor {getattr(tractor, '__version__', '0.1.0a5')} "
          f"trio {trio.__version__} python {sys.version.split()[0]} "
          f"arbiter port {args.arbiter_port}", file=sys.stderr)
    trio.run(main, args)
