"""LMDB benchmark: ours vs the original DiffusionRig layout, measured side by side in one run.

Prints
  1. bytes per sample on disk (data.mdb size / N) for the original layout (PNG + 3 pickled fp32 tensors)
     and ours (PNG + fp16 buffers cropped to their non-zero box + codes), at two face coverages: a
     typical FFHQ-aligned head and the worst case (buffers non-zero over the whole frame);
  2. loader samples/s: our FaceDataset vs an original-style reader (PIL + pickle.loads of three fp32
     tensors, as utils/image_datasets.py does), DataLoader with 0 and 2 workers;
  3. pack throughput: with dre.face3d.face_model.FaceModel and synthetic assets when they are available
     (render + encode + write), and always the store-writing part alone.

Images are real photographs from scikit-image's sample data (so PNG sizes are realistic), resized to
the requested size. Buffers are face-like (smooth values inside an ellipse, 0 outside) unless the
FaceModel path renders real ones. Run: python bench/bench_data.py [--n 64] [--size 256]
"""

from __future__ import annotations

import argparse
import io
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dre.data import FaceDataset, schema  # noqa: E402
from tests._data_helpers import write_legacy_lmdb  # noqa: E402  (the original layout: a test fixture)
from dre.data.store import build_lmdb  # noqa: E402


def photos(size: int, n: int) -> list[np.ndarray]:
    import skimage.data as sd

    base = [sd.astronaut(), sd.chelsea(), sd.coffee(), sd.rocket(), sd.immunohistochemistry()]
    out = []
    for i in range(n):
        src = base[i % len(base)]
        h, w = src.shape[:2]
        s = min(h, w)
        off = (i // len(base)) * 7 % max(1, (max(h, w) - s) or 1)
        crop = src[:s, off : off + s] if w > h else src[off : off + s, :s]
        out.append(np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.LANCZOS)))
    return out


def face_cond(size: int, seed: int, coverage: str) -> np.ndarray:
    """(9,S,S) float32 face-like buffers. 'typical': head ellipse ~0.6 W × 0.8 H; 'full': no zero border."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy, cx = 0.55 + rng.uniform(-0.03, 0.03), 0.5 + rng.uniform(-0.03, 0.03)
    ry, rx = (0.40, 0.30) if coverage == "typical" else (10.0, 10.0)
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0
    nx, ny = np.clip((xx - cx) / 0.35, -1, 1), np.clip(-(yy - cy) / 0.45, -1, 1)
    nz = np.sqrt(np.clip(1 - nx**2 - ny**2, 0, 1))
    albedo = np.stack([0.55 + 0.2 * np.sin(9 * xx + k) * np.cos(7 * yy) for k in range(3)])
    albedo += rng.normal(0, 0.01, albedo.shape)
    rendered = albedo * (0.25 + 0.85 * nz + 0.2 * nx)
    return (np.concatenate([rendered, np.stack([nx, ny, nz]), albedo]) * inside[None]).astype(np.float32)


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_ours(path: Path, pngs: list[bytes], conds: list[np.ndarray], size: int) -> float:
    """Write our store (as pack does, minus rendering); returns seconds."""
    t0 = time.perf_counter()
    codes = np.zeros(236, np.float32)
    with build_lmdb(path) as b:
        for start in range(0, len(pngs), 32):
            recs = []
            for i in range(start, min(start + 32, len(pngs))):
                recs += [
                    (schema.sample_key(i, "image"), pngs[i]),
                    (schema.sample_key(i, "buffers"), schema.encode_buffers(conds[i], f"sample {i}")),
                    (schema.sample_key(i, "codes"), schema.encode_codes(codes, np.eye(3))),
                    (schema.sample_key(i, "source"), f"img_{i:05d}.png".encode()),
                ]
            b.put(recs)
        b.write_meta(schema.make_meta(count=len(pngs), image_size=size, extractor="deca", assets={}, synthetic=True,
                                      source_hash=None, mean_shape=None, has_codes=True))  # fmt: skip
    return time.perf_counter() - t0


class OriginalStyleDataset(torch.utils.data.Dataset):
    """The original reader's work per sample: PNG → [-1,1], three pickle.loads of fp32 tensors, cat."""

    def __init__(self, path: Path, length: int) -> None:
        self.path, self.length, self.env = path, length, None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        import lmdb

        if self.env is None:
            self.env = lmdb.open(str(self.path), readonly=True, lock=False, readahead=False, meminit=False)
        with self.env.begin(write=False) as txn:
            img = Image.open(io.BytesIO(txn.get(f"image_{i:06d}".encode()))).convert("RGB")
            image = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255.0 * 2 - 1
            # trusted, self-written benchmark data: this is exactly the unsafe call the original makes
            parts = [pickle.loads(txn.get(f"{k}_{i:06d}".encode())) for k in ("rendered", "normal", "albedo")]
        return {"image": image, "cond": torch.cat(parts, 0)}


def loader_rate(ds: torch.utils.data.Dataset, workers: int, batch: int, epochs: int) -> tuple[float, float]:
    """(samples/s wall clock, CPU ms per sample in this process) over ``epochs`` after a warm-up epoch."""
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0, drop_last=True)  # fmt: skip
    for _ in loader:  # warm-up epoch: worker start, page cache
        pass
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    for _ in range(epochs):
        for b in loader:
            n += b["image"].shape[0]
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n * 1e3


def bytes_per_sample(path: Path, n: int) -> float:
    return (path / "data.mdb").stat().st_size / n


def pack_with_face_model(root: Path, n: int, size: int) -> tuple[float, float, float, float] | None:
    """With synthetic FLAME renders: (pack images/s, mean box coverage, bytes/sample original, ours), or None."""
    try:
        from dre import pack
        from dre.face3d.face_model import FaceModel
        from dre.face3d.synth import write_synthetic_assets
    except ImportError:
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _data_helpers import renderable_codes, write_codes_table  # noqa: E402

    assets = root / "assets"
    write_synthetic_assets(assets, seed=0)
    flat, tform = renderable_codes(n, size)
    model = FaceModel.from_assets(assets, torch.device("cpu"))
    write_codes_table(root / "codes.parquet", root / "aligned", n, size, flat=flat, tform=tform, assets=model.checksums)
    cfg = pack.Config(out=root / "fm.lmdb", images=root / "aligned", codes=root / "codes.parquet", size=size,
                     batch_size=16, device="cpu")  # fmt: skip
    res = pack.run(cfg, face_model=model)
    from dre.data import LmdbAlbum

    album = LmdbAlbum(cfg.out)
    cover = np.mean([np.prod(np.diff(np.reshape(album.buffers_box(i)[0], (2, 2)), axis=1)) / size**2 for i in range(n)])
    # the same images and renders in the original layout (fp32 pickles), for a like-for-like size
    write_legacy_lmdb(root / "fm_orig.lmdb", [album.image_png(i) for i in range(n)],
                      [album.buffers(i).astype(np.float32) for i in range(n)])  # fmt: skip
    return res.count / res.seconds, float(cover), bytes_per_sample(root / "fm_orig.lmdb", n), bytes_per_sample(cfg.out, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="samples per store")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        n, size = args.n, args.size
        pngs = [png(a) for a in photos(size, n)]
        print(f"# {n} samples, {size}², mean PNG {np.mean([len(p) for p in pngs]) / 1024:.1f} KiB (scikit-image photos)")
        print("\n## bytes per sample on disk (data.mdb / N)")
        print(f"{'coverage':<10}{'original':>14}{'ours':>14}{'ours/orig':>11}")
        results = {}
        for cov in ("typical", "full"):
            conds = [face_cond(size, i, cov) for i in range(n)]
            write_legacy_lmdb(root / f"orig_{cov}.lmdb", pngs, conds)
            t_write = write_ours(root / f"ours_{cov}.lmdb", pngs, conds, size)
            bo, bu = bytes_per_sample(root / f"orig_{cov}.lmdb", n), bytes_per_sample(root / f"ours_{cov}.lmdb", n)
            results[cov] = (bo, bu, t_write)
            print(f"{cov:<10}{bo / 2**20:>11.3f} MiB{bu / 2**20:>11.3f} MiB{bu / bo:>11.3f}")
        print(f"(store writing alone, typical coverage: {n / results['typical'][2]:.0f} samples/s)")

        print(f"\n## loader (batch {args.batch}, {args.epochs} epochs after a warm-up, typical coverage; best of "
              f"{args.rounds} interleaved rounds; CPU ms/sample = main process only, so meaningful for 0 workers)")
        print(f"{'workers':<9}{'orig samples/s':>16}{'ours samples/s':>16}{'ratio':>8}{'orig CPU ms':>13}{'ours CPU ms':>13}")
        ours_ds = FaceDataset(root / "ours_typical.lmdb")
        orig_ds = OriginalStyleDataset(root / "orig_typical.lmdb", n)
        for w in args.workers:
            ro = ru = (0.0, float("inf"))
            for _ in range(args.rounds):  # interleave so load changes on a shared machine hit both alike
                a = loader_rate(orig_ds, w, args.batch, args.epochs)
                b = loader_rate(ours_ds, w, args.batch, args.epochs)
                ro = (max(ro[0], a[0]), min(ro[1], a[1]))
                ru = (max(ru[0], b[0]), min(ru[1], b[1]))
            print(f"{w:<9}{ro[0]:>16.1f}{ru[0]:>16.1f}{ru[0] / ro[0]:>8.2f}{ro[1]:>13.2f}{ru[1]:>13.2f}")

        print("\n## pack (render + encode + write) with FaceModel on CPU, synthetic assets")
        fm = pack_with_face_model(root, min(n, 16), size)
        if fm is None:
            print("FaceModel / dre.face3d.synth not available in this checkout: render throughput not measured")
        else:
            print(f"{fm[0]:.1f} images/s; rendered buffers' box covers {fm[1]:.2f} of the frame on average")
            print(f"bytes/sample with these renders: original {fm[2] / 2**20:.3f} MiB, ours {fm[3] / 2**20:.3f} MiB, "
                  f"ours/orig {fm[3] / fm[2]:.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
