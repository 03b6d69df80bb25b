"""The FLAME layer as DECA and EMOCA use it: codes → mesh vertices and 68 landmarks; and its two files.

The files are FLAME 2020's ``generic_model.pkl`` (a Python 2 pickle of chumpy objects, read through the
restricted unpickler: no chumpy, no code execution) and DECA's ``landmark_embedding.npy``. Their loaders
validate shapes and raise :class:`~dre.errors.DreError` naming the file and where to obtain it.

Parameters: shape β (100 = first identity PCs), expression ψ (50 = PCs 300..349), pose (6) = global
axis-angle + jaw axis-angle. Neck and eye rotations are fixed at zero, so FLAME's 15-D pose is
``[global, 0, jaw, 0, 0]``. Linear blend skinning follows FLAME's (docs/reference.md) step by step, including the
Rodrigues ``+1e-8`` quirk (it changes results by ~1e-8 rad, kept for parity) and DECA's *class-method*
dynamic-contour lookup (un-negated yaw). Batched, any device; buffers move with ``.to``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from dre.assets.catalog import (
    FLAME_FILE,
    LANDMARK_FILE,
    expect,
    official_sizes_required,
    require_file,
)
from dre.errors import DreError
from dre.safety.unpickle import load_flame_pickle, load_npy

# FLAME 2020 / DECA release sizes (docs/reference.md).
N_VERTICES = 5023
N_FACES = 9976
N_JOINTS = 5
N_SHAPEDIRS = 400
N_SHAPE_PCS = 300  # shapedirs[..., :300] identity, [..., 300:] expression
N_POSEDIRS = 36

NECK_KIN_CHAIN = (1, 0)
"""Joints whose rotations make up the head's yaw for the dynamic contour (neck, then root)."""


# --- the files: FLAME 2020 generic_model.pkl and DECA's landmark embedding ------------------------


@dataclass
class FlameModel:
    """FLAME arrays as float32/int64 numpy (chumpy and sparse already converted)."""

    v_template: np.ndarray  # (V, 3)
    shapedirs: np.ndarray  # (V, 3, K) K >= 350: [:300] identity, [300:] expression
    posedirs: np.ndarray  # (V, 3, 36)
    J_regressor: np.ndarray  # (5, V) dense
    weights: np.ndarray  # (V, 5) skinning weights
    parents: np.ndarray  # (5,) int64, parents[0] = -1
    faces: np.ndarray  # (F, 3) int64

    @property
    def n_vertices(self) -> int:
        return int(self.v_template.shape[0])


def load_flame(path: str | Path, *, official: bool | None = None) -> FlameModel:
    """Load and validate FLAME ``generic_model.pkl`` without chumpy (see :mod:`dre.safety.unpickle`)."""
    path = Path(path)
    require_file(path, FLAME_FILE, "FLAME 2020 model")
    raw = load_flame_pickle(path)
    expect(isinstance(raw, dict), path, FLAME_FILE, f"holds a {type(raw).__name__}, not FLAME's dict of arrays")
    need = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
    missing = [k for k in need if k not in raw]
    expect(not missing, path, FLAME_FILE, f"has no {', '.join(missing)} (keys: {sorted(raw)})")
    try:
        v, sd, pd, jr, w = (np.asarray(raw[k], dtype=np.float32) for k in need[:5])
        kt, f = (np.asarray(raw[k]).astype(np.int64) for k in need[5:])
    except (TypeError, ValueError) as exc:
        raise DreError(f"{path}: an array has an unexpected type ({exc})") from exc
    V = v.shape[0] if v.ndim == 2 else -1
    expect(v.ndim == 2 and v.shape[1] == 3, path, FLAME_FILE, f"v_template has shape {v.shape}, expected (V, 3)")
    expect(
        sd.ndim == 3 and sd.shape[:2] == (V, 3) and sd.shape[2] >= N_SHAPE_PCS + 50,
        path, FLAME_FILE, f"shapedirs has shape {sd.shape}, expected ({V}, 3, {N_SHAPEDIRS})",
    )
    expect(pd.shape == (V, 3, N_POSEDIRS), path, FLAME_FILE, f"posedirs has shape {pd.shape}, expected ({V}, 3, 36)")
    expect(jr.shape == (N_JOINTS, V), path, FLAME_FILE, f"J_regressor has shape {jr.shape}, expected (5, {V})")
    expect(w.shape == (V, N_JOINTS), path, FLAME_FILE, f"weights has shape {w.shape}, expected ({V}, 5)")
    expect(kt.shape == (2, N_JOINTS), path, FLAME_FILE, f"kintree_table has shape {kt.shape}, expected (2, 5)")
    expect(f.ndim == 2 and f.shape[1] == 3, path, FLAME_FILE, f"f has shape {f.shape}, expected (F, 3)")
    expect(f.min() >= 0 and f.max() < V, path, FLAME_FILE, f"face indices outside [0, {V})")
    parents = kt[0].copy()
    parents[0] = -1  # stored as uint32 max in FLAME
    expect(
        all(0 <= parents[i] < i for i in range(1, N_JOINTS)), path, FLAME_FILE,
        f"kintree_table parents {kt[0].tolist()} are not a chain rooted at joint 0",
    )
    expect(np.allclose(w.sum(1), 1.0, atol=1e-3), path, FLAME_FILE, "skinning weight rows do not sum to 1")
    if official_sizes_required(path, official):
        expect(
            V == N_VERTICES and f.shape[0] == N_FACES and sd.shape[2] == N_SHAPEDIRS,
            path, FLAME_FILE,
            f"has {V} vertices, {f.shape[0]} faces, {sd.shape[2]} shape components; FLAME 2020 has "
            f"{N_VERTICES}, {N_FACES}, {N_SHAPEDIRS}",
        )
    return FlameModel(v_template=v, shapedirs=sd, posedirs=pd, J_regressor=jr, weights=w, parents=parents, faces=f)


# --- landmark embedding --------------------------------------------------------------------------


@dataclass
class LandmarkEmbedding:
    """DECA's landmark embedding: face index + barycentric coordinates per landmark."""

    static_faces: np.ndarray  # (51,) int64
    static_bary: np.ndarray  # (51, 3) float32
    dynamic_faces: np.ndarray  # (79, 17) int64: contour per rounded yaw (see Flame)
    dynamic_bary: np.ndarray  # (79, 17, 3) float32
    full_faces: np.ndarray  # (68,) int64
    full_bary: np.ndarray  # (68, 3) float32


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


_EMBEDDING: dict[str, tuple[str, type, tuple[int, ...]]] = {
    "static_lmk_faces_idx": ("static_faces", np.int64, (51,)),
    "static_lmk_bary_coords": ("static_bary", np.float32, (51, 3)),
    "dynamic_lmk_faces_idx": ("dynamic_faces", np.int64, (79, 17)),
    "dynamic_lmk_bary_coords": ("dynamic_bary", np.float32, (79, 17, 3)),
    "full_lmk_faces_idx": ("full_faces", np.int64, (68,)),
    "full_lmk_bary_coords": ("full_bary", np.float32, (68, 3)),
}
"""File key → (:class:`LandmarkEmbedding` field, dtype, expected shape)."""


def load_landmark_embedding(path: str | Path, *, n_faces: int | None = None) -> LandmarkEmbedding:
    """Load ``landmark_embedding.npy`` (a pickled dict, two entries torch tensors) safely."""
    path = Path(path)
    require_file(path, LANDMARK_FILE, "DECA landmark embedding")
    d = load_npy(path)
    expect(isinstance(d, dict), path, LANDMARK_FILE, f"holds a {type(d).__name__}, not DECA's dict")
    missing = [k for k in _EMBEDDING if k not in d]
    expect(not missing, path, LANDMARK_FILE, f"has no {', '.join(missing)}")
    arrays = {}
    for key, (name, dtype, want) in _EMBEDDING.items():
        a = _as_numpy(d[key]).astype(dtype)
        if not name.startswith("dynamic"):  # the static and full tables may carry a leading batch axis
            a = a.reshape(-1, *want[1:])
        expect(a.shape == want, path, LANDMARK_FILE, f"{key} has shape {a.shape}, expected {want}")
        arrays[name] = a
    emb = LandmarkEmbedding(**arrays)
    for name, bary in (("static", emb.static_bary), ("dynamic", emb.dynamic_bary), ("full", emb.full_bary)):
        expect(
            np.allclose(bary.sum(-1), 1.0, atol=1e-3), path, LANDMARK_FILE,
            f"{name} barycentric coordinates do not sum to 1",
        )
    if n_faces is not None:
        for name, idx in (("static", emb.static_faces), ("dynamic", emb.dynamic_faces), ("full", emb.full_faces)):
            expect(
                idx.min() >= 0 and idx.max() < n_faces, path, LANDMARK_FILE,
                f"{name} landmark face indices reach {idx.max()}, but the mesh has {n_faces} faces",
            )
    return emb



# --- the layer ---------------------------------------------------------------------------------


class FlameOutput(NamedTuple):
    vertices: torch.Tensor  # (B, V, 3) world space (metres)
    landmarks2d: torch.Tensor  # (B, 68, 3): 17 dynamic contour + 51 static points
    landmarks3d: torch.Tensor  # (B, 68, 3): the "full" embedding (no dynamic contour)
    joints: torch.Tensor  # (B, 5, 3) posed joints


def batch_rodrigues(rvec: torch.Tensor) -> torch.Tensor:
    """Axis-angle (N, 3) → rotation matrices (N, 3, 3), with DECA/smplx's ``|r + 1e-8|`` angle."""
    angle = torch.linalg.vector_norm(rvec + 1e-8, dim=1, keepdim=True)  # (N, 1)
    axis = rvec / angle
    cos = torch.cos(angle)[:, :, None]
    sin = torch.sin(angle)[:, :, None]
    x, y, z = axis.unbind(1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rvec.dtype, device=rvec.device).expand_as(k)
    return eye + sin * k + (1.0 - cos) * (k @ k)


def rot_mat_to_yaw(rot: torch.Tensor) -> torch.Tensor:
    """The y-axis Euler angle DECA reads off a rotation: ``atan2(-R20, sqrt(R00² + R10²))`` (radians)."""
    sy = torch.sqrt(rot[:, 0, 0] ** 2 + rot[:, 1, 0] ** 2)
    return torch.atan2(-rot[:, 2, 0], sy)


def dynamic_contour_index(yaw_deg: torch.Tensor) -> torch.Tensor:
    """Row of the (79, 17) contour tables for a yaw in degrees: round(min(yaw, 39)); negatives map to
    ``39 - yaw`` (40..78), below -39 to 78 — DECA's ``_find_dynamic_lmk_idx_and_bcoords``."""
    a = torch.round(torch.clamp(yaw_deg, max=39.0)).to(torch.long)
    neg = torch.where(a < -39, torch.full_like(a, 78), 39 - a)
    return torch.where(a < 0, neg, a)


def vertices_to_landmarks(
    vertices: torch.Tensor, faces: torch.Tensor, face_idx: torch.Tensor, bary: torch.Tensor
) -> torch.Tensor:
    """Σ_k bary_k · vertex(face[idx], k). face_idx (B, L) long, bary (B, L, 3) → (B, L, 3)."""
    b = vertices.shape[0]
    tri = faces[face_idx]  # (B, L, 3) vertex ids
    batch = torch.arange(b, device=vertices.device)[:, None, None]
    corners = vertices[batch, tri]  # (B, L, 3 corners, 3 xyz)
    return (bary[..., None] * corners).sum(dim=2)


class Flame(nn.Module):
    """FLAME with DECA's 100 shape / 50 expression / 6 pose parameters."""

    def __init__(
        self, model: FlameModel, landmarks: LandmarkEmbedding, n_shape: int = 100, n_exp: int = 50
    ) -> None:
        super().__init__()
        f32 = torch.float32
        sd = np.concatenate(
            [model.shapedirs[:, :, :n_shape], model.shapedirs[:, :, N_SHAPE_PCS : N_SHAPE_PCS + n_exp]], axis=2
        )
        v = model.n_vertices
        self.n_shape, self.n_exp = n_shape, n_exp
        self.register_buffer("v_template", torch.as_tensor(model.v_template, dtype=f32))
        self.register_buffer("shapedirs", torch.as_tensor(sd, dtype=f32))  # (V, 3, n_shape + n_exp)
        # the same basis as one (n_shape + n_exp, V*3) matrix: blend shapes become a single GEMM
        self.register_buffer("_shapedirs_mat", torch.as_tensor(sd.reshape(v * 3, -1).T.copy(), dtype=f32), persistent=False)
        # (36, V*3): row p holds pose-corrective offsets for pose feature p (FLAME's (V,3,36) transposed)
        self.register_buffer("posedirs", torch.as_tensor(model.posedirs.reshape(v * 3, -1).T.copy(), dtype=f32))
        self.register_buffer("J_regressor", torch.as_tensor(model.J_regressor, dtype=f32))
        self.register_buffer("lbs_weights", torch.as_tensor(model.weights, dtype=f32))
        self.register_buffer("faces", torch.as_tensor(model.faces, dtype=torch.long))
        self.parents: list[int] = [int(p) for p in model.parents]
        for f in fields(landmarks):  # static / dynamic / full: face ids (long) and barycentric coordinates
            dtype = torch.long if f.name.endswith("_faces") else f32
            self.register_buffer(f.name, torch.as_tensor(getattr(landmarks, f.name), dtype=dtype))

    @classmethod
    def from_assets(cls, assets_dir: str | Path, device: torch.device | str = "cpu") -> "Flame":
        root = Path(assets_dir)
        model = load_flame(root / FLAME_FILE)
        emb = load_landmark_embedding(root / LANDMARK_FILE, n_faces=len(model.faces))
        return cls(model, emb).to(device)

    @staticmethod
    def full_pose(pose: torch.Tensor) -> torch.Tensor:
        """(B, 6) [global, jaw] → (B, 15) [global, neck = 0, jaw, eyes = 0]."""
        zero3 = pose.new_zeros(pose.shape[0], 3)
        return torch.cat([pose[:, :3], zero3, pose[:, 3:6], zero3, zero3], dim=1)

    def lbs(self, betas: torch.Tensor, full_pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Blend shapes + linear blend skinning. Returns (vertices, posed joints, rotations (B, 5, 3, 3))."""
        b = betas.shape[0]
        n_j = len(self.parents)
        v_shaped = self.v_template + (betas @ self._shapedirs_mat).view(b, -1, 3)
        joints = self.J_regressor @ v_shaped  # rest joints (B, 5, 3)
        rots = batch_rodrigues(full_pose.reshape(-1, 3)).view(b, n_j, 3, 3)
        eye = torch.eye(3, dtype=rots.dtype, device=rots.device)
        pose_feature = (rots[:, 1:] - eye).reshape(b, -1)  # (B, 36)
        v_posed = v_shaped + (pose_feature @ self.posedirs).view(b, -1, 3)
        # rigid chain: world transform of each joint, parents before children
        rel = joints.clone()
        rel[:, 1:] = joints[:, 1:] - joints[:, self.parents[1:]]
        world: list[torch.Tensor] = []
        for i in range(n_j):
            local = torch.zeros(b, 4, 4, dtype=rots.dtype, device=rots.device)
            local[:, :3, :3] = rots[:, i]
            local[:, :3, 3] = rel[:, i]
            local[:, 3, 3] = 1.0
            world.append(local if i == 0 else world[self.parents[i]] @ local)
        g = torch.stack(world, dim=1)  # (B, 5, 4, 4)
        posed_joints = g[:, :, :3, 3]
        # remove each joint's rest position so the transform acts on rest-pose vertices
        a = g.clone()
        a[:, :, :3, 3] = g[:, :, :3, 3] - (g[:, :, :3, :3] @ joints[..., None])[..., 0]
        t = (self.lbs_weights @ a[:, :, :3, :].reshape(b, n_j, 12)).view(b, -1, 3, 4)  # (B, V, 3, 4) blended
        x, y, z = (c[..., None] for c in v_posed.unbind(-1))
        verts = t[..., 3] + t[..., 0] * x + t[..., 1] * y + t[..., 2] * z  # rows of [R|t] applied to [v, 1]
        return verts, posed_joints, rots

    def forward(self, shape: torch.Tensor, exp: torch.Tensor, pose: torch.Tensor) -> FlameOutput:
        """shape (B, 100), exp (B, 50), pose (B, 6) → vertices and landmarks (float32)."""
        betas = torch.cat([shape[:, : self.n_shape], exp[:, : self.n_exp]], dim=1).to(self.v_template.dtype)
        full = self.full_pose(pose.to(self.v_template.dtype))
        verts, joints, rots = self.lbs(betas, full)
        b = verts.shape[0]
        # dynamic contour from the head's yaw (root ∘ neck rotation; neck is zero here but kept general)
        rel = torch.eye(3, dtype=rots.dtype, device=rots.device).expand(b, 3, 3)
        for j in NECK_KIN_CHAIN:
            rel = rots[:, j] @ rel
        row = dynamic_contour_index(rot_mat_to_yaw(rel) * (180.0 / np.pi))
        idx = torch.cat([self.dynamic_faces[row], self.static_faces.expand(b, -1)], dim=1)
        bary = torch.cat([self.dynamic_bary[row], self.static_bary.expand(b, -1, -1)], dim=1)
        lmk2d = vertices_to_landmarks(verts, self.faces, idx, bary)
        lmk3d = vertices_to_landmarks(
            verts, self.faces, self.full_faces.expand(b, -1), self.full_bary.expand(b, -1, -1)
        )
        return FlameOutput(verts, lmk2d, lmk3d, joints)
