"""How long a new user waits: a fresh `make run` (fresh copy of the checkout, no var/, no
DATABASE_URL) from the command to "Ready", against a second `make run` in the same copy, which
reuses the embedded server, the schema, the sample data, the user and the key (the baseline).

A fresh start pays for initdb, creating the database, 25 migrations, collectstatic and the
sample import; the second start only for the checks. The virtualenv is reused (`make -o venv`):
installing it is pip's time, measured by `--with-venv` in a separate copy when asked.

    .venv/bin/python bench/make_run.py [--repeats 3] [--with-venv]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fresh_copy import fresh_copy, user_env  # noqa: E402
from tests.support.web import free_port  # noqa: E402


def time_to_ready(copy: Path, *, reuse_venv: bool = True) -> float:
    env = user_env(PORT=str(free_port()))
    argv = ["make", "--no-print-directory", *(["-o", "venv"] if reuse_venv else []), "run"]
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=copy, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in process.stdout:
            if re.search(r"Ready\. Operations page:", line):
                return time.perf_counter() - started
        raise SystemExit(f"make run ended before Ready (exit {process.wait()})")
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh copies to time (default 3)")
    parser.add_argument("--with-venv", action="store_true",
                        help="also time one fresh copy that builds its own virtualenv (network)")
    args = parser.parse_args()
    fresh, again = [], []
    for n in range(args.repeats):
        with fresh_copy("bench-make-run") as copy:
            fresh.append(time_to_ready(copy))
            again.append(time_to_ready(copy))
        print(f"  copy {n + 1}: fresh {fresh[-1]:.1f} s, second run {again[-1]:.1f} s", flush=True)
    f, a = statistics.median(fresh), statistics.median(again)
    print(f"fresh `make run` to Ready:  {f:.1f} s (median of {args.repeats})")
    print(f"second `make run` to Ready: {a:.1f} s (baseline: everything reused)")
    print(f"ratio fresh / second:       {f / a:.2f}x")
    if args.with_venv:
        with fresh_copy("bench-make-run-venv") as copy:
            (copy / ".venv").unlink()  # the copy builds its own, as on a new machine
            whole = time_to_ready(copy, reuse_venv=False)
        print(f"fresh `make run` with a new virtualenv: {whole:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
