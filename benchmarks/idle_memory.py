"""Resident memory (VmRSS from /proc/<pid>/status, the process and its children) of every process of an idle
local stack: Temporal, the S3 server, the simulator, main, communication, one worker per integration (as the
stack runs them, one process each), and for comparison the all-in-one launcher serving every integration."""

from __future__ import annotations

import asyncio

from .harness import describe_machine, local_stack, mib, rss_kib, stop_process, table, tree_rss_kib

SETTLE_SECONDS = 10.0
SAMPLES = 3


async def run() -> None:
    samples: dict[str, list[tuple[int, int]]] = {}
    kinds: dict[str, str] = {}
    async with local_stack(components=("middleware", "services", "workers")) as bench:
        launcher = bench.start_worker([], "all-in-one-launcher")
        try:
            await bench.wait_worker("all-in-one-launcher")
            await asyncio.sleep(SETTLE_SECONDS)
            pids: dict[str, tuple[int, str]] = {
                s.name: (s.pid, s.kind) for s in bench.stack.status() if s.pid is not None
            }
            pids["launcher (all integrations, one process)"] = (launcher.pid, "comparison")
            for _ in range(SAMPLES):
                for name, (pid, kind) in pids.items():
                    kinds[name] = kind
                    samples.setdefault(name, []).append((rss_kib(pid), tree_rss_kib(pid)))
                await asyncio.sleep(1)
        finally:
            stop_process(launcher)
    rows: list[list[object]] = []
    total = 0
    for name, values in samples.items():
        own = max(v[0] for v in values)
        tree = max(v[1] for v in values)
        if kinds[name] != "comparison":
            total += tree
        rows.append([name, kinds[name], mib(own), mib(tree)])
    print(f"machine: {describe_machine()}")
    print(f"idle local stack, {SETTLE_SECONDS:g} s after start, largest of {SAMPLES} samples 1 s apart:")
    print(table(["process", "kind", "RSS MiB", "with children MiB"], rows))
    print(f"  stack total (without the comparison launcher): {mib(total)} MiB")


if __name__ == "__main__":
    asyncio.run(run())
