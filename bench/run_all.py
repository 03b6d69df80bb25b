"""One report of the project's performance: the demo's wall time by rule, then every part's benchmark.

    python bench/run_all.py [--project DIR] [--no-benches] [--timeout SECONDS] [--only NAME ...]

1. Reads the Snakemake ``benchmark:`` files of a finished run (``DIR/benchmarks/**.tsv``, default: the
   current folder, e.g. after the demo) and prints one table: rule, jobs, wall seconds (sum over jobs),
   share of the total, peak RSS.
2. Runs each ``bench/bench_*.py`` with its defaults (this interpreter, the checkout on PYTHONPATH) and
   prints its table of side-by-side ratios under its name. A benchmark that fails or times out is
   reported as such; the others still run.

Why a script and not tests: timings depend on the machine and its load, so they are measured and
printed side by side in one run, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rule_times(benchmarks: Path) -> list[tuple[str, int, float, float]]:
    """(rule, jobs, seconds, max RSS MiB) from Snakemake benchmark files, slowest rule first.

    Layout: ``benchmarks/<rule>/<wildcards>.tsv`` or ``benchmarks/<rule>.tsv`` (one row per repeat; the
    first row is used). Column ``s`` is wall seconds, ``max_rss`` MiB ("NA" when not measured).
    """
    acc: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for path in sorted(benchmarks.rglob("*.tsv")):
        rel = path.relative_to(benchmarks)
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        row = rows[0]
        acc[rule][0] += 1
        acc[rule][1] += float(row.get("s") or 0.0)
        try:
            acc[rule][2] = max(acc[rule][2], float(row.get("max_rss") or "nan"))
        except ValueError:
            pass
    return sorted(((r, int(v[0]), v[1], v[2]) for r, v in acc.items()), key=lambda t: -t[2])


def print_rule_table(benchmarks: Path) -> None:
    rows = rule_times(benchmarks)
    print(f"## workflow wall time by rule ({benchmarks})")
    if not rows:
        print("no benchmark files: run the workflow first, e.g.\n"
              "  snakemake -c2 --configfile=config/demo/config.yaml")
        return
    total = sum(r[2] for r in rows)
    print(f"{'rule':<20}{'jobs':>6}{'seconds':>10}{'share':>8}{'max RSS MiB':>13}")
    for rule, jobs, sec, rss in rows:
        print(f"{rule:<20}{jobs:>6}{sec:>10.1f}{sec / total:>8.0%}{rss:>13.0f}")
    print(f"{'total (serial)':<20}{sum(r[1] for r in rows):>6}{total:>10.1f}")
    print("(jobs may overlap with -c2: the serial total is an upper bound of the run's wall time)")


def run_benches(names: list[str] | None, timeout: float) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    scripts = sorted((REPO / "bench").glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem in names or s.stem.removeprefix("bench_") in names]
    for script in scripts:
        print(f"\n## {script.stem}")
        t0 = time.monotonic()
        try:
            r = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"TIMED OUT after {timeout:.0f} s")
            continue
        print(r.stdout.rstrip())
        if r.returncode != 0:
            print(f"FAILED (exit {r.returncode}):\n" + "\n".join(r.stderr.strip().splitlines()[-10:]))
        print(f"({time.monotonic() - t0:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", default=".", help="folder holding benchmarks/ of a finished run (default .)")
    p.add_argument("--no-benches", action="store_true", help="only the workflow table")
    p.add_argument("--only", nargs="*", help="run only these benchmarks (e.g. data train)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per benchmark (default 900)")
    args = p.parse_args(argv)
    print_rule_table(Path(args.project) / "benchmarks")
    if not args.no_benches:
        run_benches(args.only, args.timeout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
