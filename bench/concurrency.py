"""Measure worker processes sharing the cores: 1 process with every core against N processes with cores/N each.

Usage: python bench/concurrency.py --processes 1,2 [bench/ingest.py options, e.g. --corpus DIR --limit 4
       --model panns-cnn14 --random-weights]
For each count N it starts N `bench/ingest.py --mode worker --shard k/N --threads cores/N` processes at once (what
`celery worker --concurrency N` gives each process, see config/celery.py) and prints the audio they embedded
together per wall second, the CPU seconds, and the largest peak RSS of one process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embeddings.cpu import cpu_capabilities, threads_per_process, usable_cores

INGEST = Path(__file__).resolve().parent / "ingest.py"


def _rows(output: str) -> dict[str, str]:
    rows = {}
    for line in output.splitlines():
        key, _, value = line.partition("  ")
        if value.strip():
            rows[key.strip()] = value.strip()
    return rows


def _measure(processes: int, passthrough: list[str]) -> dict[str, float]:
    threads = threads_per_process(processes)
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, str(INGEST), *passthrough, "--shard", f"{k}/{processes}", "--threads", str(threads)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for k in range(processes)
    ]
    outputs = [child.communicate()[0] for child in children]
    wall = time.perf_counter() - started
    if any(child.returncode for child in children):
        raise SystemExit(f"an ingest process failed: {[child.returncode for child in children]}")
    rows = [_rows(output) for output in outputs]
    audio = sum(float(row["audio hours"]) * 3600 for row in rows)
    return {
        "threads": threads,
        "audio": audio,
        "wall": wall,
        "embedding wall": max(float(row["wall seconds"]) for row in rows),
        "cpu": sum(float(row["CPU seconds (all threads)"]) for row in rows),
        "rss": max(float(row["peak RSS MB"]) for row in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    args, passthrough = parser.parse_known_args()
    print(f"CPU: {cpu_capabilities().describe()}; {usable_cores()} usable cores")
    print("processes  threads each  audio s  realtime (embedding wall)  realtime (incl. load)  CPU s  peak RSS MB")
    for processes in (int(n) for n in args.processes.split(",")):
        m = _measure(processes, ["--mode", "worker", *passthrough])
        print(
            f"{processes:9d}  {m['threads']:12.0f}  {m['audio']:7.0f}  {m['audio'] / m['embedding wall']:24.1f}x"
            f"  {m['audio'] / m['wall']:20.1f}x  {m['cpu']:5.0f}  {m['rss']:11.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
