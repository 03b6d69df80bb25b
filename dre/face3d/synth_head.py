"""The synthetic head of ``dre assets synth``: a FLAME-structured mesh and its files, in the official formats.

- ``generic_model.pkl``: a FLAME-structured head (5 joints, LBS, 400 shape/expression components,
  36 pose correctives) pickled like FLAME 2020: ``chumpy.ch.Ch`` objects (written through a stand-in
  module, so chumpy is not needed), a scipy ``csc_matrix`` ``J_regressor``, uint32 root in
  ``kintree_table``. The mesh is a smaller documented topology: a latitude/longitude ellipsoid with
  face relief, :data:`N_LAT` × :data:`N_LON` → 1874 vertices / 3744 triangles instead of 5023 / 9976.
- ``head_template.obj``: the same triangles with a UV layout (seam at the back of the head).
- ``landmark_embedding.npy``: DECA's dict (two entries torch tensors) with 68 iBUG-ordered landmarks
  placed on the synthetic face and a 79-row dynamic contour table (the contour slides with yaw).
- ``FLAME_texture.npz``: ``mean`` and ``tex_dir`` (BGR, 0-255) at :data:`TEX_SIZE`² with 50 components
  (official: 512², 200) — the renderer upsamples/downsamples to its UV size the same way.

The resolution constants are module globals read at call time, so a benchmark can ask for a
FLAME-sized head (about 5,000 vertices, 512² texture) by setting them before writing.
"""

from __future__ import annotations

import contextlib
import sys
import types
from typing import Iterator

import numpy as np
import torch
from scipy.sparse import csc_matrix

from dre.face3d.flame import N_POSEDIRS, N_SHAPE_PCS, N_SHAPEDIRS

N_LAT = 40  # latitude bands (39 vertex rings + 2 poles)
N_LON = 48  # longitude columns
RADII = (0.078, 0.11, 0.095)  # ellipsoid half-width, half-height, half-depth (metres)
TEX_SIZE = 128
TEX_PCS = 50


# --- geometry ------------------------------------------------------------------------------------


def _lat(ring: np.ndarray | float) -> np.ndarray:
    """Latitude of vertex ring r (0 = just below the top pole)."""
    return np.pi / 2 - np.pi * (np.asarray(ring, dtype=np.float64) + 1) / N_LAT


def _lon(col: np.ndarray | float) -> np.ndarray:
    """Longitude of column j; 0 faces +z (the camera), columns are symmetric about it."""
    return -np.pi + 2 * np.pi * (np.asarray(col, dtype=np.float64) + 0.5) / N_LON


def _ellipsoid(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    rx, ry, rz = RADII
    return np.stack([rx * np.cos(lat) * np.sin(lon), ry * np.sin(lat), rz * np.cos(lat) * np.cos(lon)], -1)


def _to_angles(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front-surface (lat, lon) of ellipsoid points seen at image-plane (x, y) (x right, y up)."""
    rx, ry, _ = RADII
    lat = np.arcsin(np.clip(xy[:, 1] / ry, -1, 1))
    lon = np.arcsin(np.clip(xy[:, 0] / (rx * np.cos(lat)), -1, 1))
    return lat, lon


def _landmarks_xy() -> np.ndarray:
    """68 iBUG-ordered points (metres, x = image right = subject's left, y up) of the synthetic face."""
    pts: list[tuple[float, float]] = []
    for k in range(17):  # jaw 0..16, image-left ear → chin → image-right ear
        t = np.pi * k / 16
        pts.append((-0.066 * np.cos(t), 0.008 - 0.092 * np.sin(t) ** 1.15))
    for x0 in (-0.054, 0.014):  # brows 17..21 (image left), 22..26 (image right)
        for k in range(5):
            pts.append((x0 + 0.04 * k / 4, 0.040 + 0.006 * np.sin(np.pi * k / 4)))
    for k in range(4):  # nose bridge 27..30
        pts.append((0.0, 0.030 - 0.011 * k))
    for k in range(5):  # nose base 31..35
        pts.append((-0.014 + 0.007 * k, -0.012 - 0.003 * np.sin(np.pi * k / 4)))

    def eye(cx: float) -> list[tuple[float, float]]:
        # image-left corner, two top points, image-right corner, two bottom points (iBUG order)
        w, h = 0.013, 0.0045
        ang = [np.pi, 2 * np.pi / 3, np.pi / 3, 0.0, -np.pi / 3, -2 * np.pi / 3]
        return [(cx + w * np.cos(a), 0.022 + h * np.sin(a)) for a in ang]

    pts += eye(-0.032)  # 36..41: image-left eye, 36 = outer corner
    pts += eye(0.032)  # 42..47: image-right eye, 42 = inner corner
    mouth_y = -0.045
    for k in range(12):  # outer lips 48..59: left corner, upper lip to right corner, lower lip back
        a = np.pi - 2 * np.pi * k / 12
        h = 0.010 if np.sin(a) >= 0 else 0.012
        pts.append((0.026 * np.cos(a), mouth_y + h * np.sin(a)))
    for k in range(8):  # inner lips 60..67
        a = np.pi - 2 * np.pi * k / 8
        pts.append((0.020 * np.cos(a), mouth_y + 0.003 * np.sin(a)))
    out = np.asarray(pts, dtype=np.float64)
    assert out.shape == (68, 2)
    return out


def _gauss(lat: np.ndarray, lon: np.ndarray, c_lat: float, c_lon: float, s_lat: float, s_lon: float) -> np.ndarray:
    return np.exp(-(((lat - c_lat) / s_lat) ** 2) - ((lon - c_lon) / s_lon) ** 2)


def _relief(lat: np.ndarray, lon: np.ndarray, lmk: np.ndarray) -> np.ndarray:
    """Outward displacement (metres) that makes the ellipsoid read as a face: nose, sockets, lips, chin."""
    la, lo = _to_angles(lmk)
    d = 0.020 * _gauss(lat, lon, la[30] + 0.06, 0.0, 0.20, 0.11)  # nose
    d += 0.010 * _gauss(lat, lon, la[30], 0.0, 0.07, 0.09)  # nose tip
    for eye in (slice(36, 42), slice(42, 48)):
        d -= 0.006 * _gauss(lat, lon, la[eye].mean(), lo[eye].mean(), 0.08, 0.14)
    for brow in (slice(17, 22), slice(22, 27)):
        d += 0.004 * _gauss(lat, lon, la[brow].mean() + 0.02, lo[brow].mean(), 0.07, 0.22)
    d += 0.004 * _gauss(lat, lon, la[48:60].mean(), 0.0, 0.07, 0.22)  # lips
    d += 0.006 * _gauss(lat, lon, la[8] + 0.08, 0.0, 0.12, 0.25)  # chin
    return d * (np.cos(lon) > -0.2)


@contextlib.contextmanager
def chumpy_standin() -> Iterator[type]:
    """A class pickled as ``chumpy.ch.Ch`` (what FLAME 2020 contains) without importing chumpy."""

    class Ch:  # noqa: D401 - mirrors chumpy's public name
        def __init__(self, x: np.ndarray) -> None:
            self.x = x
            self._dirty_vars: set = set()
            self._itr = None
            self._depends_on_deps: dict = {}
            self._make_dense = False
            self._make_sparse = False

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    pkg = types.ModuleType("chumpy")
    mod = types.ModuleType("chumpy.ch")
    mod.Ch = Ch  # type: ignore[attr-defined]
    pkg.ch = mod  # type: ignore[attr-defined]
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, mod
    try:
        yield Ch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class HeadMesh:
    """The synthetic head: vertices, faces, UVs, landmark cells. Built once per call."""

    def __init__(self) -> None:
        n_rings = N_LAT - 1
        rings, cols = np.meshgrid(np.arange(n_rings), np.arange(N_LON), indexing="ij")
        lat = np.concatenate([[np.pi / 2], _lat(rings).ravel(), [-np.pi / 2]])
        lon = np.concatenate([[0.0], _lon(cols).ravel(), [0.0]])
        self.lat, self.lon = lat, lon
        self.lmk_xy = _landmarks_xy()
        base = _ellipsoid(lat, lon)
        rx, ry, rz = RADII
        normal = base / np.array([rx**2, ry**2, rz**2])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        self.vertices = base + normal * _relief(lat, lon, self.lmk_xy)[:, None]
        self.n_v = len(lat)
        top, bottom = 0, self.n_v - 1

        def vid(r: int, j: int) -> int:
            return 1 + r * N_LON + (j % N_LON)

        def tid(r: int, c: int) -> int:  # texture-coordinate index; column N_LON duplicates column 0
            return 1 + r * (N_LON + 1) + c

        faces, uv_faces = [], []
        self.quad_faces = np.zeros((n_rings - 1, N_LON, 2), dtype=np.int64)
        for j in range(N_LON):  # top cap
            faces.append((top, vid(0, j), vid(0, j + 1)))
            uv_faces.append((0, tid(0, j), tid(0, j + 1)))
        for r in range(n_rings - 1):
            for j in range(N_LON):
                a, b, c, d = vid(r, j), vid(r, j + 1), vid(r + 1, j), vid(r + 1, j + 1)
                ta, tb, tc, td = tid(r, j), tid(r, j + 1), tid(r + 1, j), tid(r + 1, j + 1)
                self.quad_faces[r, j] = (len(faces), len(faces) + 1)
                faces += [(a, c, b), (b, c, d)]  # counter-clockwise seen from outside
                uv_faces += [(ta, tc, tb), (tb, tc, td)]
        t_bottom = 1 + n_rings * (N_LON + 1)
        for j in range(N_LON):  # bottom cap
            faces.append((vid(n_rings - 1, j), bottom, vid(n_rings - 1, j + 1)))
            uv_faces.append((tid(n_rings - 1, j), t_bottom, tid(n_rings - 1, j + 1)))
        self.faces = np.asarray(faces, dtype=np.int64)
        self.uv_faces = np.asarray(uv_faces, dtype=np.int64)
        tr, tc_ = np.meshgrid(np.arange(n_rings), np.arange(N_LON + 1), indexing="ij")
        u = 0.01 + 0.98 * tc_.ravel() / N_LON
        v = 0.01 + 0.98 * (_lat(tr).ravel() + np.pi / 2) / np.pi
        self.uvs = np.concatenate([[[0.5, 0.99]], np.stack([u, v], 1), [[0.5, 0.01]]]).astype(np.float64)

    def embed(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face index + barycentric coordinates of surface points given by (lat, lon) on the grid."""
        ring_f = (np.pi / 2 - lat) / (np.pi / N_LAT) - 1
        r0 = np.floor(ring_f).astype(np.int64)
        t = ring_f - r0
        col_f = (lon + np.pi) / (2 * np.pi / N_LON) - 0.5
        j0 = np.floor(col_f).astype(np.int64)
        s = col_f - j0
        j0 = j0 % N_LON
        if (r0 < 0).any() or (r0 >= N_LAT - 2).any():
            raise ValueError("landmark outside the ringed part of the synthetic mesh")
        first = s + t <= 1
        face = np.where(first, self.quad_faces[r0, j0, 0], self.quad_faces[r0, j0, 1])
        bary = np.where(
            first[:, None],
            np.stack([1 - s - t, t, s], 1),  # (a, c, b)
            np.stack([1 - t, 1 - s, s + t - 1], 1),  # (b, c, d)
        )
        return face, bary

    def landmark_embedding(self) -> dict[str, object]:
        lat, lon = _to_angles(self.lmk_xy)
        faces, bary = self.embed(lat, lon)
        rows_f, rows_b = [], []
        for row in range(79):  # DECA's table: rows 0..39 yaw 0..39°, rows 40..78 yaw -1..-39°
            yaw = row if row <= 39 else 39 - row
            # the visible contour slides toward the far cheek as the head turns
            f, b = self.embed(lat[:17], np.clip(lon[:17] - np.deg2rad(yaw) * 0.5, -1.45, 1.45))
            rows_f.append(f)
            rows_b.append(b)
        return {
            "static_lmk_faces_idx": faces[17:].astype(np.int64),
            "static_lmk_bary_coords": bary[17:].astype(np.float64),
            "dynamic_lmk_faces_idx": torch.from_numpy(np.stack(rows_f).astype(np.int64)),
            "dynamic_lmk_bary_coords": torch.from_numpy(np.stack(rows_b).astype(np.float32)),
            "full_lmk_faces_idx": faces[None].astype(np.int64),
            "full_lmk_bary_coords": bary[None].astype(np.float32),
        }


def _smooth_basis(points: np.ndarray, degree: int = 3) -> np.ndarray:
    """Monomials of normalised coordinates up to ``degree``: smooth fields over the mesh."""
    p = points / np.abs(points).max(0)
    feats = [np.ones(len(p))]
    for dx in range(degree + 1):
        for dy in range(degree + 1 - dx):
            for dz in range(degree + 1 - dx - dy):
                if dx + dy + dz:
                    feats.append(p[:, 0] ** dx * p[:, 1] ** dy * p[:, 2] ** dz)
    return np.stack(feats, 1)


def flame_dict(mesh: HeadMesh, rng: np.random.Generator, Ch: type) -> dict[str, object]:
    v = mesh.vertices
    n_v = mesh.n_v
    phi = _smooth_basis(v)  # (V, M)
    m = phi.shape[1]
    # identity components: smooth fields, decreasing energy (≈3 mm rms for the first)
    sigma = 0.003 / np.sqrt(1 + np.arange(N_SHAPE_PCS) / 8)
    coef = rng.standard_normal((m, 3, N_SHAPE_PCS)) * sigma / np.sqrt(m)
    shape_dirs = np.einsum("vm,mck->vck", phi, coef)
    # expression components: confined to the mouth/eye/brow region; 0 = mouth open, 1 = smile
    la, lo = _to_angles(mesh.lmk_xy)
    lat, lon = mesh.lat, mesh.lon
    lower = _gauss(lat, lon, la[57] - 0.05, 0.0, 0.18, 0.45) * (lat < la[62] + 0.02)
    region = np.clip(
        _gauss(lat, lon, la[48:68].mean(), 0.0, 0.25, 0.5) + _gauss(lat, lon, la[17:48].mean(), 0.0, 0.15, 0.7), 0, 1
    )
    n_expr = N_SHAPEDIRS - N_SHAPE_PCS
    exp_dirs = np.einsum("vm,mck->vck", phi, rng.standard_normal((m, 3, n_expr)) * 0.004 / np.sqrt(m))
    exp_dirs *= region[:, None, None]
    exp_dirs[:, :, 0] = lower[:, None] * np.array([0.0, -0.008, 0.0])
    corners = _gauss(lat, lon, la[48], lo[48], 0.08, 0.12) + _gauss(lat, lon, la[54], lo[54], 0.08, 0.12)
    exp_dirs[:, :, 1] = corners[:, None] * np.array([0.0, 0.004, -0.002]) + (
        corners * np.sign(lon)
    )[:, None] * np.array([0.003, 0.0, 0.0])
    shapedirs = np.concatenate([shape_dirs, exp_dirs], axis=2)
    posedirs = np.einsum("vm,mck->vck", phi, rng.standard_normal((m, 3, N_POSEDIRS)) * 0.001 / np.sqrt(m))

    # skinning: jaw = front lower face, neck = bottom of the head, eyes = around the eyes, root = rest
    jaw_w = (1 / (1 + np.exp(-((la[62] + la[66]) / 2 - lat) / 0.05))) * (1 / (1 + np.exp(-(1.2 - np.abs(lon)) / 0.1)))
    neck_w = 1 / (1 + np.exp(-(-1.05 - lat) / 0.05))
    eye_l = 0.9 * _gauss(lat, lon, la[36:42].mean(), lo[36:42].mean(), 0.05, 0.07)
    eye_r = 0.9 * _gauss(lat, lon, la[42:48].mean(), lo[42:48].mean(), 0.05, 0.07)
    w = np.stack([np.zeros(n_v), neck_w, jaw_w * (1 - neck_w), eye_l, eye_r], 1)
    w = np.clip(w, 0, None)
    over = w[:, 1:].sum(1)
    w[:, 1:] /= np.maximum(over, 1.0)[:, None]
    w[:, 0] = 1 - w[:, 1:].sum(1)

    # joint regressor: averages of vertex sets whose centroid is the intended joint
    def ring_members(ring: int) -> np.ndarray:
        return 1 + ring * N_LON + np.arange(N_LON)

    ear = np.where((np.abs(np.abs(lon) - np.pi / 2) < 0.2) & (np.abs(lat - la[62]) < 0.12))[0]
    eye_sets = [np.argsort(-eye_l)[:6], np.argsort(-eye_r)[:6]]
    sets = [ring_members(N_LAT - 5), ring_members(N_LAT - 7), ear, *eye_sets]  # root, neck, jaw, eyes
    jr = np.zeros((5, n_v))
    for j, idx in enumerate(sets):
        jr[j, idx] = 1.0 / len(idx)
    kintree = np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64)
    jreg = csc_matrix(jr)
    return {
        "f": mesh.faces.astype(np.uint32),
        "J_regressor": jreg,
        "kintree_table": kintree,
        "J": Ch(jr @ v),
        "weights": Ch(w),
        "posedirs": posedirs,
        "v_template": Ch(v),
        "shapedirs": Ch(shapedirs),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def obj_text(mesh: HeadMesh) -> str:
    lines = ["# synthetic FLAME-structured head template written by `dre assets synth` (not DECA's file)"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in mesh.uvs]
    lines += [
        f"f {a + 1}/{ta + 1} {b + 1}/{tb + 1} {c + 1}/{tc + 1}"
        for (a, b, c), (ta, tb, tc) in zip(mesh.faces, mesh.uv_faces)
    ]
    return "\n".join(lines) + "\n"


def texture_space(mesh: HeadMesh, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(mean (H,W,3), tex_dir (H,W,3,K)), BGR, 0-255, painted in the mesh's UV layout."""
    h = TEX_SIZE
    v_img, u_img = np.meshgrid(1 - (np.arange(h) + 0.5) / h, (np.arange(h) + 0.5) / h, indexing="ij")
    col = (u_img - 0.01) / 0.98 * N_LON
    lon = -np.pi + 2 * np.pi * (col + 0.5) / N_LON
    lat = (v_img - 0.01) / 0.98 * np.pi - np.pi / 2
    la, lo = _to_angles(mesh.lmk_xy)
    skin = np.array([125.0, 150.0, 205.0])  # BGR
    mean = np.broadcast_to(skin, (h, h, 3)).copy()

    def paint(mask: np.ndarray, bgr: tuple[float, float, float]) -> None:
        mean[:] = mean * (1 - mask[..., None]) + np.array(bgr) * mask[..., None]

    for eye in (slice(36, 42), slice(42, 48)):
        paint(0.9 * _gauss(lat, lon, la[eye].mean(), lo[eye].mean(), 0.05, 0.12), (70, 60, 55))
        paint(0.9 * _gauss(lat, lon, la[eye].mean(), lo[eye].mean(), 0.025, 0.05), (40, 30, 30))
    for brow in (slice(17, 22), slice(22, 27)):
        paint(0.8 * _gauss(lat, lon, la[brow].mean(), lo[brow].mean(), 0.035, 0.22), (40, 55, 75))
    paint(0.85 * _gauss(lat, lon, la[48:60].mean(), 0.0, 0.07, 0.28), (95, 90, 175))
    hair = 1 / (1 + np.exp(-(lat - 0.62 - 0.25 * np.cos(lon)) / 0.05))  # hairline higher at the front
    paint(0.8 * hair, (30, 35, 45))
    # smooth variation + basis: a few random cosines per component and channel
    k = TEX_PCS
    freq = rng.uniform(0.5, 3.0, (k, 3, 4, 2)) * np.pi
    phase = rng.uniform(0, 2 * np.pi, (k, 3, 4))
    amp = rng.standard_normal((k, 3, 4)) * (18.0 / np.sqrt(1 + np.arange(k) / 5))[:, None, None]
    # cos(a·u + b·v + φ) = cos(a·u)·cos(b·v + φ) − sin(a·u)·sin(b·v + φ): separable in rows and columns
    u1 = u_img[0][:, None, None, None]  # (W, 1, 1, 1) per column
    v1 = v_img[:, 0][:, None, None, None]  # (H, 1, 1, 1) per row
    au, bv = freq[..., 0][None] * u1, freq[..., 1][None] * v1 + phase[None]
    tex_dir = np.einsum("rkcw,qkcw->rqck", amp[None] * np.cos(bv), np.cos(au)) - np.einsum(
        "rkcw,qkcw->rqck", amp[None] * np.sin(bv), np.sin(au)
    )  # (H, W, 3, K)
    mean += 0.4 * tex_dir[..., 0]
    return np.clip(mean, 0, 255).astype(np.float32), tex_dir.astype(np.float32)
