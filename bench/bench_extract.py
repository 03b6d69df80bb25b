"""Extraction + buffer rendering throughput: ours (batched) vs the original DiffusionRig/DECA recipe, side by side.

"Original-style" follows DiffusionRig's ``create_data.py`` (docs/reference.md): batches of 8,
fp32; per image a skimage resize-and-truncate, a skimage similarity estimate and warp; ``E_flame`` *and*
``E_detail`` (DECA's ``encode`` runs both, the detail code is then unused); the FLAME texture computed at
its full resolution and nearest-resized; DECA's ``SRenderY`` path (12 interpolated attribute channels,
every pixel gathered, PyTorch3D ``rasterize_meshes`` with its default settings, which on CPU is the naive
kernel). "Ours" is ``Extractor.crop`` + ``encode`` + ``FaceModel.render`` at ``--batch``. Both run on the
same synthetic assets (random weights: speed only), by default with a FLAME-sized mesh (≈5k vertices,
≈10k faces, 512² texture) written by ``dre.face3d.synth`` with ``synth_head``'s grid constants raised. The two paths'
buffers are compared, so the speed-up is for the same output.

    PYTHONPATH=. python bench/bench_extract.py [--images 16] [--batch 32] [--device cpu|cuda] [--mesh flame|synth]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ORIG_BATCH = 8


# ------------------------------------------------------------------------------------------- set-up
def write_assets(folder: Path, mesh: str) -> Path:
    import dre.face3d.synth as synth
    import dre.face3d.synth_head as head

    if mesh == "flame":  # FLAME 2020 has 5023 vertices / 9976 faces and a 512² texture space
        head.N_LAT, head.N_LON, head.TEX_SIZE = 72, 70, 512
    return synth.write_synthetic_assets(folder / "assets", seed=0)


def make_photos(face_model, n: int, size: int = 256) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Rendered synthetic faces (uint8) and their projected 68 landmarks, as an aligned album would give."""
    from dre.face3d.codes import FlameCodes
    from dre.face3d.render import crop_to_image, orthographic_project
    from dre.face3d.synth import code_statistics

    mean, std = code_statistics()
    rng = np.random.default_rng(0)
    codes = FlameCodes.from_flat(torch.from_numpy((mean + 0.5 * std * rng.standard_normal((n, 236))).astype(np.float32)))
    tf = torch.eye(3).repeat(n, 1, 1)
    tf[:, 0, 0] = tf[:, 1, 1] = 224 / size
    imgs, lms = [], []
    with torch.no_grad():
        for a in range(0, n, 16):
            c = codes.index(slice(a, a + 16)).to(face_model.device)
            t = tf[a : a + 16].to(face_model.device)
            buf = face_model.render(c, t, size)
            out = face_model.flame(c.shape, c.exp, c.pose)
            p = crop_to_image(orthographic_project(out.landmarks2d, c.cam), t, size)
            img = (buf.rendered.clamp(0, 1) + 0.45 * (1 - buf.alpha)).permute(0, 2, 3, 1)
            imgs += list((img.cpu().numpy() * 255).round().astype(np.uint8))
            lms += list(((p[..., :2] + 1) / 2 * size).cpu().numpy())
    return imgs, lms


# ------------------------------------------------------------------------------------ original path
def original_crop(img: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from skimage.transform import estimate_transform, resize, warp

    img = (resize(img, img.shape[:2], anti_aliasing=True) * 255).astype(np.uint8)
    left, right, top, bottom = lm[:, 0].min(), lm[:, 0].max(), lm[:, 1].min(), lm[:, 1].max()
    old = (right - left + bottom - top) / 2 * 1.1
    c = np.array([right - (right - left) / 2, bottom - (bottom - top) / 2])
    s = int(old * 1.25)
    src = np.array([[c[0] - s / 2, c[1] - s / 2], [c[0] - s / 2, c[1] + s / 2], [c[0] + s / 2, c[1] - s / 2]])
    tform = estimate_transform("similarity", src, np.array([[0, 0], [0, 223], [223, 0]]))
    return warp(img / 255.0, tform.inverse, output_shape=(224, 224)).transpose(2, 0, 1), tform.params


class OriginalRenderer:
    """DECA's SRenderY data path (SH light, render in the original image), for timing and cross-checking."""

    def __init__(self, face_model, tex_mean: np.ndarray, tex_dir: np.ndarray) -> None:
        r = face_model.renderer
        self.faces = r.faces
        self.face_uvs = torch.cat([r.face_uvs, torch.ones_like(r.face_uvs[..., :1])], -1)  # (u, v, 1) as DECA
        dev = self.faces.device
        self.mean = torch.from_numpy(tex_mean).reshape(1, -1).to(dev) / 255.0
        self.basis = torch.from_numpy(tex_dir[..., :50]).reshape(-1, 50).to(dev) / 255.0
        self.tex_hw = tex_mean.shape[:2]

    def albedo(self, tex: torch.Tensor) -> torch.Tensor:
        uv = self.mean + tex @ self.basis.T  # (B, H·W·3) at full resolution (DECA multiplies and sums)
        uv = uv.reshape(tex.shape[0], *self.tex_hw, 3).permute(0, 3, 1, 2)
        return F.interpolate(uv, [256, 256])[:, [2, 1, 0]]

    def __call__(self, verts, cam, tform, albedo, light, size):
        from pytorch3d.renderer.mesh import rasterize_meshes
        from pytorch3d.structures import Meshes

        from dre.face3d.render import SH_CONSTANTS, crop_to_image, orthographic_project, vertex_normals

        b, nf = verts.shape[0], self.faces.shape[0]
        tv = crop_to_image(orthographic_project(verts, cam), tform, size)
        tv[..., 2] += 10
        normals = vertex_normals(verts, self.faces)
        tnormals = vertex_normals(tv, self.faces)
        attrs = torch.cat([self.face_uvs.expand(b, -1, -1, -1), tnormals[:, self.faces], verts[:, self.faces],
                           normals[:, self.faces]], -1).reshape(b * nf, 3, 12)  # fmt: skip
        fixed = tv.clone()
        fixed[..., :2] *= -1
        p2f, _, bary, _ = rasterize_meshes(Meshes(verts=fixed, faces=self.faces.expand(b, -1, -1)), image_size=size,
                                           blur_radius=0.0, faces_per_pixel=1, bin_size=None,
                                           max_faces_per_bin=None, perspective_correct=False)  # fmt: skip
        mask = p2f == -1
        idx = p2f.clamp(min=0).view(-1, 1, 1).expand(-1, 3, 12)
        vals = (bary[..., None] * attrs.gather(0, idx).view(b, size, size, 1, 3, 12)).sum(-2)
        vals[mask] = 0
        vals = vals[:, :, :, 0].permute(0, 3, 1, 2)
        alpha = (~mask[..., 0]).float()[:, None]
        alb = F.grid_sample(albedo, vals[:, :2].permute(0, 2, 3, 1), align_corners=False)
        n = vals[:, 9:12]
        sh = torch.stack([n[:, 0] * 0 + 1, n[:, 0], n[:, 1], n[:, 2], n[:, 0] * n[:, 1], n[:, 0] * n[:, 2],
                          n[:, 1] * n[:, 2], n[:, 0] ** 2 - n[:, 1] ** 2, 3 * n[:, 2] ** 2 - 1], 1)  # fmt: skip
        sh = sh * torch.tensor(SH_CONSTANTS, device=sh.device)[None, :, None, None]
        shading = (light[:, :, :, None, None] * sh[:, :, None]).sum(1)
        return torch.cat([alb * shading * alpha, n * alpha, alb * alpha], 1)


def detail_encoder(device: torch.device) -> torch.nn.Module:
    """A second ResNet-50 encoder (128 outputs) standing in for DECA's ``E_detail``, which ``encode`` runs."""
    from dre.face3d.encoders import ResnetEncoder

    return ResnetEncoder(128).to(device).eval()


# ---------------------------------------------------------------------------------------------- runs
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_ours(ext, fm, imgs, lms, batch: int, device) -> tuple[dict[str, float], torch.Tensor]:
    t = {"crop": 0.0, "encode": 0.0, "render": 0.0}
    outs = []
    with torch.no_grad():
        for a in range(0, len(imgs), batch):
            sync(device)
            t0 = time.perf_counter()
            crops, tform = ext.crop(imgs[a : a + batch], lms[a : a + batch])
            sync(device)
            t1 = time.perf_counter()
            codes = ext.encode(crops)
            sync(device)
            t2 = time.perf_counter()
            outs.append(fm.render(codes, tform, 256).condition())
            sync(device)
            t3 = time.perf_counter()
            t["crop"] += t1 - t0
            t["encode"] += t2 - t1
            t["render"] += t3 - t2
    return t, torch.cat(outs)


def run_original(enc, e_detail, fm, orig_r, imgs, lms, device) -> tuple[dict[str, float], torch.Tensor]:
    from dre.face3d.codes import FlameCodes

    t = {"crop": 0.0, "encode": 0.0, "render": 0.0}
    outs = []
    with torch.no_grad():
        for a in range(0, len(imgs), ORIG_BATCH):
            t0 = time.perf_counter()
            pairs = [original_crop(im, lm) for im, lm in zip(imgs[a : a + ORIG_BATCH], lms[a : a + ORIG_BATCH])]
            x = torch.from_numpy(np.stack([p[0] for p in pairs])).float().to(device)
            tform = torch.from_numpy(np.stack([p[1] for p in pairs])).float().to(device)
            sync(device)
            t1 = time.perf_counter()
            codes: FlameCodes = enc(x)
            e_detail(x)
            sync(device)
            t2 = time.perf_counter()
            verts = fm.vertices(codes)
            outs.append(orig_r(verts, codes.cam, tform, orig_r.albedo(codes.tex), codes.light, 256))
            sync(device)
            t3 = time.perf_counter()
            t["crop"] += t1 - t0
            t["encode"] += t2 - t1
            t["render"] += t3 - t2
    return t, torch.cat(outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mesh", choices=("flame", "synth"), default="flame")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from dre.assets.catalog import TEXTURE_FILE
    from dre.face3d.texture import load_flame_texture
    from dre.face3d.extractor import Extractor
    from dre.face3d.face_model import FaceModel

    with tempfile.TemporaryDirectory() as tmp:
        assets = write_assets(Path(tmp), args.mesh)
        fm = FaceModel.from_assets(assets, device)
        ext = Extractor.from_assets(assets, "deca", device)
        tex = load_flame_texture(assets / TEXTURE_FILE)
    orig_r = OriginalRenderer(fm, tex.mean, tex.tex_dir)
    orig_enc = copy.deepcopy(ext.encoder).to(memory_format=torch.contiguous_format)  # the original is NCHW
    e_detail = detail_encoder(device)
    imgs, lms = make_photos(fm, args.images)
    n_faces = fm.renderer.faces.shape[0]
    print(f"device {device} ({torch.get_num_threads()} threads), {args.images} images 256², mesh "
          f"{fm.flame.v_template.shape[0]} vertices / {n_faces} faces, texture {tex.mean.shape[0]}²")  # fmt: skip

    # warm-up (one small batch each), then the timed runs
    run_ours(ext, fm, imgs[:2], lms[:2], 2, device)
    run_original(orig_enc, e_detail, fm, orig_r, imgs[:2], lms[:2], device)
    t_new, out_new = run_ours(ext, fm, imgs, lms, args.batch, device)
    t_old, out_old = run_original(orig_enc, e_detail, fm, orig_r, imgs, lms, device)

    diff = (out_new - out_old).abs()
    print(f"buffers ours vs original: max |diff| {diff.max().item():.2e}, mean {diff.mean().item():.2e}")
    n = len(imgs)
    print(f"{'stage':<10}{'original (b=8) img/s':>22}{f'ours (b={args.batch}) img/s':>22}{'ratio':>9}")
    for k in ("crop", "encode", "render"):
        print(f"{k:<10}{n / t_old[k]:>22.1f}{n / t_new[k]:>22.1f}{t_old[k] / t_new[k]:>8.1f}x")
    to, tn = sum(t_old.values()), sum(t_new.values())
    print(f"{'total':<10}{n / to:>22.2f}{n / tn:>22.2f}{to / tn:>8.1f}x")


if __name__ == "__main__":
    main()
