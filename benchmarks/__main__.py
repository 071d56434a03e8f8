"""``python -m benchmarks [NAME ...]``: run the named benchmarks (default: all) and print their numbers.

Each benchmark starts what it needs (a local stack on free ports in a temporary directory, workers, client
processes), talks only to 127.0.0.1, and stops everything it started. Progress of the stacks goes to stderr;
the numbers go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import traceback

from . import async_vs_sync, celery_vs_platform, fairness, idle_memory, main_latency, polling, push, steps, throughput
from .harness import describe_machine, load_average

BENCHMARKS = {
    "main-latency": main_latency.run,
    "throughput": throughput.run,
    "async-vs-sync": async_vs_sync.run,
    "steps": steps.run,
    "celery": celery_vs_platform.run,
    "push": push.run,
    "polling": polling.run,
    "fairness": fairness.run,
    "idle-memory": idle_memory.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    print(f"machine: {describe_machine()}", flush=True)
    failed: list[str] = []
    for name in args.names or list(BENCHMARKS):
        print(f"\n== {name} (load average before: {load_average()})", flush=True)
        began = time.monotonic()
        try:
            asyncio.run(BENCHMARKS[name]())
        except Exception:
            failed.append(name)
            print(f"FAILED: {name}", flush=True)
            traceback.print_exc()
        print(f"== {name}: {time.monotonic() - began:.0f} s, load average after: {load_average()}", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
