"""``python -m benchmarks [NAME ...]``: run the named benchmarks (default: all) and print their numbers."""

from __future__ import annotations

import argparse
import asyncio

from . import async_vs_sync, idle_memory, main_latency, polling, push, throughput

BENCHMARKS = {
    "main-latency": main_latency.run,
    "throughput": throughput.run,
    "async-vs-sync": async_vs_sync.run,
    "push": push.run,
    "polling": polling.run,
    "idle-memory": idle_memory.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    for name in args.names or list(BENCHMARKS):
        print(f"== {name}")
        asyncio.run(BENCHMARKS[name]())


if __name__ == "__main__":
    main()
