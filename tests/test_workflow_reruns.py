"""Rerun behaviour on a finished demo: nothing to redo, exactly the dependents of a change, resumed training.

Marked ``slow``: they need the demo to have run once (shared with tests/test_demo_workflow.py). Tests that
change files work on a copy of the finished demo, so their order does not matter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.demo_project import (
    CONFIG_FLAG, DEMO_TARGET, DemoRun, Project, clone_project, demo_run, planned_jobs, tail,
)

pytestmark = pytest.mark.slow

STAGE2_MODEL = "results/models/stage2/demo.deca/model.pt"
STAGE2_RUN = "results/runs/stage2/demo.deca"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    done = demo_run(tmp_path_factory.getbasetemp())
    if done.result.returncode != 0:
        pytest.fail("the demo itself failed:\n" + tail(done.result))
    return done


@pytest.fixture()
def copy(run: DemoRun, tmp_path: Path) -> Project:
    return clone_project(run.project, tmp_path / "copy")


def test_second_run_does_nothing(run: DemoRun) -> None:
    again = run.project.demo(DEMO_TARGET, timeout=300)
    assert again.returncode == 0, tail(again)
    assert "Nothing to be done" in again.stdout + again.stderr, tail(again)
    assert planned_jobs(again) == {}


def test_touching_an_album_photo_reruns_only_that_albums_chain(copy: Project) -> None:
    photo = sorted((copy.root / "resources/demo/album").glob("*.jpg"))[0]
    # Snakemake 9 reruns on an input newer than its outputs *and* with a changed checksum: a bare
    # `touch` is not a change any more, so edit the photo (one pixel) as a user would.
    from PIL import Image

    with Image.open(photo) as img:
        changed = img.convert("RGB")
    changed.putpixel((0, 0), tuple(255 - v for v in changed.getpixel((0, 0))))
    changed.save(photo, quality=95)
    later = time.time() + 5
    os.utime(photo, (later, later))
    plan = copy.demo("-n", DEMO_TARGET, timeout=300)
    assert plan.returncode == 0, tail(plan)
    # The prior album, stage 1 and the target are untouched by a personal-album photo.
    assert planned_jobs(plan) == {"align": 1, "extract": 1, "pack": 1, "train_stage2": 1, "edit": 1}, tail(plan)
    assert "results/aligned/demo_prior" not in plan.stdout


def test_changing_a_sheet_row_reruns_that_albums_chain(copy: Project) -> None:
    """The demo album's mean_shape flag changes how it is packed: pack, stage 2 and the edit rerun."""
    sheet = copy.root / "config/demo/albums.tsv"
    rows = sheet.read_text().splitlines()
    i = next(k for k, r in enumerate(rows) if r.startswith("demo\t"))
    cells = rows[i].split("\t")
    assert cells[4] == "true"
    cells[4] = "false"
    rows[i] = "\t".join(cells)
    sheet.write_text("\n".join(rows) + "\n")
    plan = copy.demo("-n", DEMO_TARGET, timeout=300)
    assert plan.returncode == 0, tail(plan)
    assert planned_jobs(plan) == {"pack": 1, "train_stage2": 1, "edit": 1}, tail(plan)


def test_changing_an_edit_row_reruns_only_the_edit(copy: Project) -> None:
    sheet = copy.root / "config/demo/edits.tsv"
    header, row = sheet.read_text().splitlines()[:2]
    cells = row.split("\t")
    cells[header.split("\t").index("seed")] = "7"
    sheet.write_text(header + "\n" + "\t".join(cells) + "\n")
    plan = copy.demo("-n", DEMO_TARGET, timeout=300)
    assert plan.returncode == 0, tail(plan)
    assert planned_jobs(plan) == {"edit": 1}, tail(plan)


def _train_pids(root: Path) -> list[int]:
    """`dre train` processes running in ``root`` (cwd), found through /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"dre" in argv and b"train" in argv and Path(os.readlink(entry / "cwd")) == root:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_killed_training_resumes_from_its_last_checkpoint(copy: Project) -> None:
    """Kill stage 2 after its first checkpoint (as a wall-time kill would), rerun: it resumes, not restarts."""
    (copy.root / STAGE2_MODEL).unlink()
    import shutil

    shutil.rmtree(copy.root / STAGE2_RUN)
    log = copy.root / "logs/train_stage2/demo.deca.log"
    log.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "-c2", CONFIG_FLAG, STAGE2_MODEL],
        cwd=copy.root, env=copy.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    ckpts = copy.root / STAGE2_RUN / "checkpoints"
    killed = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if any(ckpts.glob("state-*.pt")):
                for pid in _train_pids(copy.root.resolve()):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                if killed:
                    break
            time.sleep(0.1)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert killed, "training finished (or never checkpointed) before it could be killed:\n" + out[-3000:]
    assert proc.returncode != 0 and not (copy.root / STAGE2_MODEL).exists(), out[-3000:]
    max_steps = yaml.safe_load((copy.root / "config/demo/config.yaml").read_text())["stage2"]["max_steps"]
    saved = sorted(p.name for p in ckpts.glob("state-*.pt"))
    assert saved and saved[-1] != f"state-{max_steps:07d}.pt", saved
    rerun = copy.demo(STAGE2_MODEL, timeout=600)
    assert rerun.returncode == 0, tail(rerun)
    text = log.read_text()
    assert "resuming from" in text, text[-3000:]
    import torch

    blob = torch.load(copy.root / STAGE2_MODEL, map_location="cpu", weights_only=True)
    assert blob["meta"]["step"] == max_steps
