"""The database faults of issue 21, end to end: extra paid calls per fault, against a baseline.

For each fault (tests/support/db_faults.py): a private PostgreSQL server of its own (Debian's
binaries), ``--decisions`` pending decisions, the real ``drain_halacha`` with the claude-cli
backend running the fake CLI (0.2 s calls, a call log). The fault hits the drain; then the next
run drains the rest. Extra calls = calls the fake CLI completed − decisions. Run twice in the
same process: the baseline with the journal and the reconnect switched off
(the settings DRAINS_JOURNAL_UNSAFE_OFF = True, DRAINS_DB_RETRY_SECONDS = 0, test-only), then as shipped. Also
printed: whether the run rows' items_done add up to the decisions. Goal: 0 extra calls for
every fault. Needs root (a tmpfs for the full disk; the server runs as ``pgserver``).

    .venv/bin/python bench/db_faults.py [--decisions 120] [--only fast_restart,kill_9]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import db_faults as faults  # noqa: E402
from tests.support.db import with_settings  # noqa: E402
from tests.support.private_pg import PrivatePostgres  # noqa: E402

FAULTS = ("fast_restart", "immediate_c4", "locked_staging", "full_disk", "kill_9")


def run_fault(name: str, pg: PrivatePostgres, folder: Path, decisions: int, tuned: dict) -> dict:
    started = time.monotonic()
    db = f"bench_{name}_{'base' if tuned else 'journal'}"
    if name == "full_disk":
        with faults.small_tablespace(pg) as (tablespace, mount):
            c = faults.Case(pg, folder, db, decisions, tablespace=tablespace,
                            FAKE_CLAUDE_STDOUT=faults.big_answer(),
                            settings={"DRAINS_DB_RETRY_SECONDS": 4, **tuned})
            status, err = faults.fault_full_disk(c, mount, at_call=10)
            report = _finish(c, err)
            with pg.admin() as conn:
                conn.execute(f'DROP DATABASE "{db}"')
                conn.execute(f"DROP TABLESPACE {tablespace}")
    else:
        c = faults.Case(pg, folder, db, decisions, settings=tuned)
        if name == "fast_restart":
            status, err = faults.fault_fast_restart(c, at_call=decisions // 4)
        elif name == "immediate_c4":
            status, err = faults.fault_immediate_shutdown(c, at_call=decisions // 4)
        elif name == "locked_staging":
            c.env = with_settings(c.env, DRAINS_DB_STATEMENT_TIMEOUT_MS=3000,
                                  DRAINS_DB_LOCK_TIMEOUT_MS=0)
            status, err, _ = faults.fault_locked_staging(c, at_call=decisions // 4, hold=5.0)
        else:
            record = folder / "record"
            record.mkdir(exist_ok=True)
            faults.fault_kill_9(c, record, at_call=decisions // 8)
            time.sleep(2.0)  # an orphaned CLI child would finish its call now
            err = ""
        report = _finish(c, err)
        with pg.admin() as conn:
            conn.execute(f'DROP DATABASE "{db}"')
    report["seconds"] = time.monotonic() - started
    return report


def _finish(c: faults.Case, err: str) -> dict:
    done = faults.manage(c.env, "drain_halacha", "--trigger", "manual", "--max-items", "100000")
    runs = c.query("SELECT coalesce(sum(items_done), 0) FROM drains_drainrun WHERE drain = 'halacha'")
    left_running = c.query("SELECT count(*) FROM drains_drainrun WHERE status = 'running'")[0][0]
    return {
        "extra": c.extra_calls(),
        "counted": int(runs[0][0]),
        "running": left_running,
        "lines": len(faults.failure_lines(err)),
        "next_ok": done.returncode == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=120)
    parser.add_argument("--only", default=",".join(FAULTS))
    args = parser.parse_args()
    chosen = [name for name in args.only.split(",") if name]
    unknown = set(chosen) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}")
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-db-faults-") as tmp, PrivatePostgres() as pg:
        faults.make_template(pg, Path(tmp) / "template", args.decisions)
        for mode, tuned in (("baseline", faults.BASELINE), ("journal", {})):
            for name in chosen:
                folder = Path(tmp) / mode / name
                results.setdefault(name, {})[mode] = run_fault(name, pg, folder, args.decisions, tuned)
                r = results[name][mode]
                sys.stdout.write(f"  {mode:8} {name:15} extra calls {r['extra']:+d}, "
                                 f"counted {r['counted']}/{args.decisions}, {r['seconds']:.0f} s\n")
    sys.stdout.write(
        f"\n{args.decisions} decisions, fake CLI 0.2 s calls\n"
        f"{'fault':16}{'baseline extra':>16}{'journal extra':>15}{'rows count (base/journal)':>28}\n"
    )
    for name in chosen:
        base, ours = results[name]["baseline"], results[name]["journal"]
        sys.stdout.write(
            f"{name:16}{base['extra']:>+16d}{ours['extra']:>+15d}"
            f"{base['counted']:>16}/{ours['counted']:<11}\n"
        )
    worst = max(results[name]["journal"]["extra"] for name in chosen)
    sys.stdout.write(f"goal: 0 extra calls with the journal; worst {worst:+d}\n")


if __name__ == "__main__":
    main()
