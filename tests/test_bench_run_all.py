"""bench/run_all.py: the per-rule table is read correctly from Snakemake benchmark files."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _load():
    spec = importlib.util.spec_from_file_location("run_all", REPO / "bench" / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bench(path: Path, seconds: float, rss: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t1\n")


def test_rule_times_sums_jobs_per_rule(tmp_path: Path) -> None:
    b = tmp_path / "benchmarks"
    _bench(b / "align" / "a.tsv", 10.0, "100.5")
    _bench(b / "align" / "b.tsv", 5.5, "300")
    _bench(b / "edit" / "demo_exp.tsv", 30.0, "NA")
    _bench(b / "demo_assets.tsv", 2.0, "50")
    rows = {r[0]: r[1:] for r in _load().rule_times(b)}
    assert rows["align"][:2] == (2, 15.5) and rows["align"][2] == 300.0
    assert rows["edit"][:2] == (1, 30.0)
    assert rows["demo_assets"][:2] == (1, 2.0)
    assert [r[0] for r in _load().rule_times(b)] == ["edit", "align", "demo_assets"]


def test_cli_table_without_benches(tmp_path: Path) -> None:
    _bench(tmp_path / "benchmarks" / "pack" / "x.tsv", 4.0, "10")
    r = subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--project", str(tmp_path), "--no-benches"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pack" in r.stdout and "100%" in r.stdout
