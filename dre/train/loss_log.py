"""Metrics on rank 0: a CSV file, TensorBoard events and a progress line.

On resume the CSV drops rows past the resume step and TensorBoard purges events past it
(``purge_step``), so replayed steps after a crash are not logged twice.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dre.safety.atomic import atomic_write_text

log = logging.getLogger(__name__)

CSV_FIELDS = ("step", "loss", "mse", "lr", "grad_norm", "images_per_s", "elapsed_s")


class MetricsWriter:
    def __init__(self, run_dir: str | Path, start_step: int, max_steps: int, *, tensorboard: bool = True,
                 progress: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"
        self.start_step, self.max_steps = start_step, max_steps
        self._truncate_csv(start_step)
        self._fh = open(self.csv_path, "a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._fh, fieldnames=CSV_FIELDS)
        if self._fh.tell() == 0:
            self._csv.writeheader()
            self._fh.flush()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional: the CSV works without it

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=start_step + 1)
            except Exception as exc:  # tensorboard not installed: CSV still works
                log.warning("TensorBoard logging disabled (%s)", exc)
        self._bar = None
        if progress and sys.stderr.isatty():
            self._bar = tqdm(total=max_steps, initial=start_step, unit="step", dynamic_ncols=True)
        self._t0 = time.perf_counter()

    def _truncate_csv(self, start_step: int) -> None:
        if not self.csv_path.exists():
            return
        text = self.csv_path.read_text(encoding="utf-8")
        rows = list(csv.DictReader(io.StringIO(text)))
        kept = [r for r in rows if r.get("step") and int(r["step"]) <= start_step]
        if len(kept) == len(rows):
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(kept)
        atomic_write_text(self.csv_path, buf.getvalue())

    def write(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{k: values.get(k, "") for k in CSV_FIELDS if k != "step"}}
        row["elapsed_s"] = round(time.perf_counter() - self._t0, 3)
        self._csv.writerow(row)
        self._fh.flush()
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"train/{k}", v, step)
            self._tb.flush()
        ips = values.get("images_per_s", 0.0)
        done = step - self.start_step
        elapsed = time.perf_counter() - self._t0
        eta = (self.max_steps - step) * elapsed / max(done, 1)
        msg = (f"step {step}/{self.max_steps} loss {values.get('loss', float('nan')):.5f} "
               f"mse {values.get('mse', float('nan')):.5f} {ips:.1f} img/s ETA {_hms(eta)}")
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix_str(f"loss {values.get('loss', 0):.4f} {ips:.1f} img/s")
            self._bar.refresh()
        else:
            print(msg, file=sys.stderr, flush=True)

    def add_image(self, tag: str, chw_uint8: Any, step: int) -> None:
        if self._tb is not None:
            self._tb.add_image(tag, chw_uint8, step, dataformats="CHW")

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
        if self._bar is not None:
            self._bar.close()


def _hms(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"
