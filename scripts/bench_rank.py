"""Wall-clock time of ``uwe rank`` as a user sees it: one cold call, then N warm calls.

    python scripts/bench_rank.py                       # models/uwe, job2skill, "data scientist"
    python scripts/bench_rank.py -n 10 --engine torch  # the torch path, for comparison
    python scripts/bench_rank.py --cmd "python -m uwe.cli" --cache-dir /tmp/uwe-index

Each call is a fresh process (``subprocess``), timed from start to exit, so imports and model
loading count, as they do for a user. The cold call runs against an empty cache directory (a
new temporary one unless ``--cache-dir`` is given): it builds the target index and saves it;
the warm calls find it. Prints every time, the median warm time, the CPU time (user + sys) of
the warm calls (on a shared CPU a steadier measure than wall time), whether every warm output
equals the cold one, and the first lines of the output. Run from the repository root (the model
and task paths are relative).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def default_cmd() -> list[str]:
    """The ``uwe`` console script beside this Python, else ``python -m uwe.cli``."""
    script = Path(sys.executable).with_name("uwe")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "uwe.cli"]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """``(wall s, cpu s of the child, stdout)``; raises if the command fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/uwe")
    ap.add_argument("--task", default="job2skill")
    ap.add_argument("--query", default="data scientist")
    ap.add_argument("-n", "--warm", type=int, default=5, help="warm calls (default: 5)")
    ap.add_argument("--engine", default=None, help="passed to `uwe rank --engine`")
    ap.add_argument(
        "--cmd",
        default=None,
        help="the uwe command (default: the console script beside this Python, "
        "else `python -m uwe.cli`)",
    )
    ap.add_argument(
        "--cache-dir",
        default=None,
        help="index cache to use (default: a new "
        "temporary folder, removed afterwards); an existing entry makes the first "
        "call warm too",
    )
    ap.add_argument("--lines", type=int, default=6, help="output lines to show (default: 6)")
    ap.add_argument("--json", metavar="FILE", help="also write the numbers here")
    args = ap.parse_args(argv)

    cmd = shlex.split(args.cmd) if args.cmd else default_cmd()
    cmd += ["rank", "--model", args.model, "--task", args.task]
    if args.engine:
        cmd += ["--engine", args.engine]
    cmd.append(args.query)
    tmp = None if args.cache_dir else tempfile.mkdtemp(prefix="uwe-bench-rank-")
    cache_dir = Path(args.cache_dir or tmp)
    env = {**os.environ, "UWE_CACHE_DIR": str(cache_dir)}
    try:
        print(f"command: UWE_CACHE_DIR={cache_dir} {shlex.join(cmd)}", flush=True)
        cold, cold_cpu, first = timed(cmd, env)
        print(f"cold: {cold:.2f} s wall, {cold_cpu:.2f} s cpu", flush=True)
        warm, warm_cpu, same = [], [], True
        for i in range(args.warm):
            wall, cpu, out = timed(cmd, env)
            warm.append(wall)
            warm_cpu.append(cpu)
            same &= out == first
            print(f"warm {i + 1}: {wall:.2f} s wall, {cpu:.2f} s cpu", flush=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    res = {
        "command": shlex.join(cmd),
        "cold_s": round(cold, 3),
        "warm_s": [round(w, 3) for w in warm],
        "warm_median_s": round(statistics.median(warm), 3) if warm else None,
        "warm_cpu_median_s": round(statistics.median(warm_cpu), 3) if warm else None,
        "warm_output_equals_cold": same,
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if warm:
        print(
            f"warm median: {res['warm_median_s']:.2f} s wall (min {min(warm):.2f}, max "
            f"{max(warm):.2f}), {res['warm_cpu_median_s']:.2f} s cpu; outputs equal the cold "
            f"one: {same}; load average {res['load_avg_1min']} on {res['cpus']} CPUs"
        )
    print("\n".join(first.splitlines()[: args.lines]))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
