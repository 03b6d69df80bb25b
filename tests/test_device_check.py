"""``bench/device_check.py --tiny``: the one-call GPU check runs every row on CPU at tiny sizes, so the first
time it meets a GPU it fails on the GPU, not on a typo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROWS = ("one-rank gloo init + all-reduce", "bf16 ε vs fp32 ε", "direct vs tiled rasteriser (CPU)",
        "stage 1 original (fp16+scaler)", "stage 1 eager (bf16)", "stage 1 channels_last (bf16)", "stage 2, 5k steps",
        "edit DDIM-2, 2 sources × 3 modes", "extraction + rendering", "pack (32²")


def test_device_check_tiny_prints_every_row(cli_env: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, str(REPO / "bench" / "device_check.py"), "--tiny"], cwd=REPO, env=cli_env,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    table = out[out.index("| check"):]
    for row in ROWS:
        assert f"| {row}" in table, (row, table)
    assert "ERROR" not in table and "FAIL" not in table, table
