"""Alignment throughput on this machine, variants measured side by side in one run.

Rows: MediaPipe landmarks (images/s), the FFHQ recipe with our defaults (integer pre-shrink, 4×
supersampled QUAD canvas), the naive variant without pre-shrink, and DiffusionRig's 4096² canvas;
on a 512² photo and on a 12-megapixel photo with a large face (where pre-shrink matters). Ratios are
against our recipe on the same photo. Last row: the whole album runner with sidecar landmarks.

Run: python bench/bench_align.py [--reps N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _rate(fn, reps: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return reps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    from dre import align
    from dre.align.ffhq import align_face
    from dre.align.sidecar import write_sidecar

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _align_helpers import render_face, sample_photos, similarity, template_landmarks  # noqa: E402

    photos = sample_photos()
    rows: list[tuple[str, str, float, float | None]] = []

    try:
        from dre.align.mediapipe_mesh import MediaPipeBackend

        be = MediaPipeBackend()
        ims = list(photos.values())
        r = _rate(lambda: [be.detect(im, Path("x")) for im in ims], args.reps) * len(ims)
        rows.append(("mediapipe landmarks", "3 photos ~512²", r, None))
        lm_astro = be.detect(photos["astronaut"], Path("a"))[0].landmarks
        be.close()
    except Exception as exc:  # mediapipe missing: still bench the recipe
        print(f"(mediapipe not benchmarked: {exc})")
        lm_astro = similarity(template_landmarks(), 60.0, 0.0, (230.0, 110.0))

    big_lm = similarity(template_landmarks(), 700.0, 12.0, (2000.0, 1300.0))  # quad ≈ 2800 px
    big = render_face(big_lm, 4000, 3000, markers=False)
    cases = [("photo 512²", Image.fromarray(photos["astronaut"]), lm_astro), ("photo 4000×3000", big, big_lm)]
    variants = [
        ("recipe (ours: pre-shrink, 4× canvas)", {}),
        ("naive: no pre-shrink", {"pre_shrink": False}),
        ("DiffusionRig canvas 4096²", {"transform_size": 4096}),
    ]
    for label, img, lm in cases:
        base = None
        for vname, kw in variants:
            r = _rate(lambda: align_face(img, lm, 256, **kw), args.reps)
            base = base or r
            rows.append((vname, label, r, base / r))

    with tempfile.TemporaryDirectory() as td:
        album = Path(td) / "album"
        album.mkdir()
        for i in range(12):
            lm = similarity(template_landmarks(), 80.0 + 5 * i, 3.0 * i - 15, (400.0, 330.0))
            render_face(lm, 800, 700, seed=i).save(album / f"p{i:02d}.jpg", quality=92)
            write_sidecar(album / f"p{i:02d}.jpg", lm)
        t = time.perf_counter()
        align.run(align.Config(input=album, output=Path(td) / "out", backend="sidecar", progress=False))
        rows.append(("album runner, sidecar (load+align+PNG)", "12 photos 800×700", 12 / (time.perf_counter() - t), None))

    print(f"{'what':<42} {'input':<20} {'images/s':>9} {'time vs ours':>13}")
    for what, inp, r, ratio in rows:
        print(f"{what:<42} {inp:<20} {r:9.2f} {'' if ratio is None else f'{ratio:12.2f}x':>13}")


if __name__ == "__main__":
    main()
