"""FaceModel: FLAME + texture space + head template + renderer — FLAME codes to physical buffers.

The head template (DECA's ``head_template.obj``: faces and UVs) is read here, by its only runtime user.

Everything downstream of the encoders (``dre pack`` for the training buffers, ``dre edit`` for the edited
ones) renders through this one object, so training and editing buffers come from the same code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dre.assets.catalog import (
    FLAME_FILE,
    TEMPLATE_FILE,
    TEXTURE_FILE,
    asset_checksums,
    expect,
    official_sizes_required,
    require_file,
    where_to_get,
)
from dre.errors import DreError
from dre.face3d.codes import Buffers, FlameCodes
from dre.face3d.flame import N_FACES, N_VERTICES, Flame
from dre.face3d.render import BufferRenderer
from dre.face3d.texture import TextureSpace, face_uv_grid, load_flame_texture
from dre.utils.synthetic import is_synthetic_assets

EYE_LEFT = slice(36, 42)
EYE_RIGHT = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54


@dataclass
class HeadTemplate:
    """DECA's ``head_template.obj``: the renderer uses faces, UVs and UV faces (0-based)."""

    vertices: np.ndarray  # (V, 3) float32 (DECA ignores them)
    faces: np.ndarray  # (F, 3) int64
    uvs: np.ndarray  # (T, 2) float32, OBJ convention (v up)
    uv_faces: np.ndarray  # (F, 3) int64 into uvs


def load_head_template(path: str | Path, *, official: bool | None = None) -> HeadTemplate:
    """Parse the OBJ (``v``, ``vt``, triangular ``f a/b[/c]``); no external OBJ library needed."""
    path = Path(path)
    require_file(path, TEMPLATE_FILE, "DECA head template with UVs")
    verts: list[list[float]] = []
    uvs: list[list[float]] = []
    faces: list[list[int]] = []
    uv_faces: list[list[int]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise DreError(f"{path}: not a text OBJ file ({exc}). Get it: {where_to_get(TEMPLATE_FILE)}") from exc
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        tag = parts[0]
        try:
            if tag == "v":
                verts.append([float(x) for x in parts[1:4]])
            elif tag == "vt":
                uvs.append([float(x) for x in parts[1:3]])
            elif tag == "f":
                corners = parts[1:]
                if len(corners) != 3:
                    raise DreError(f"{path}:{lineno}: face with {len(corners)} corners; only triangles are supported")
                fi, ti = [], []
                for c in corners:
                    bits = c.split("/")
                    fi.append(int(bits[0]))
                    if len(bits) < 2 or not bits[1]:
                        raise DreError(f"{path}:{lineno}: face corner {c!r} has no texture index (need v/vt)")
                    ti.append(int(bits[1]))
                faces.append(fi)
                uv_faces.append(ti)
        except ValueError as exc:
            raise DreError(f"{path}:{lineno}: unreadable OBJ line {line[:60]!r} ({exc})") from exc
    expect(len(faces) > 0 and len(uvs) > 0, path, TEMPLATE_FILE, "has no faces or no texture coordinates")
    v = np.asarray(verts, dtype=np.float32).reshape(-1, 3)
    t = np.asarray(uvs, dtype=np.float32).reshape(-1, 2)
    f = np.asarray(faces, dtype=np.int64)
    tf = np.asarray(uv_faces, dtype=np.int64)
    # OBJ indices are 1-based; negative ones count from the end
    f = np.where(f < 0, f + len(v), f - 1)
    tf = np.where(tf < 0, tf + len(t), tf - 1)
    expect(f.min() >= 0 and f.max() < len(v), path, TEMPLATE_FILE, "face vertex index out of range")
    expect(tf.min() >= 0 and tf.max() < len(t), path, TEMPLATE_FILE, "face texture index out of range")
    if official_sizes_required(path, official):
        expect(
            len(v) == N_VERTICES and len(f) == N_FACES, path, TEMPLATE_FILE,
            f"has {len(v)} vertices and {len(f)} faces; DECA's template has {N_VERTICES} and {N_FACES}",
        )
    return HeadTemplate(vertices=v, faces=f, uvs=t, uv_faces=tf)


def ffhq_center_from_landmarks(lmk68: torch.Tensor) -> torch.Tensor:
    """(B, 3) FFHQ crop centre of 68 world-space landmarks: ``eye_avg + 0.1·(mouth_avg − eye_avg)``.

    DiffusionRig's pose edits move the edited head back onto this point of the source so the face stays
    where FFHQ alignment put it; it uses DECA's "2D" landmarks (dynamic contour + static points), of
    which only the static eye and mouth points enter here.
    """
    eye = (lmk68[:, EYE_LEFT].mean(1) + lmk68[:, EYE_RIGHT].mean(1)) * 0.5
    mouth = (lmk68[:, MOUTH_LEFT] + lmk68[:, MOUTH_RIGHT]) * 0.5
    return eye + 0.1 * (mouth - eye)


class FaceModel(nn.Module):
    """Codes → world vertices, FFHQ centre and the three 256² buffers (see docs/ARCHITECTURE.md)."""

    def __init__(
        self,
        flame: nn.Module,
        texture: TextureSpace,
        renderer: BufferRenderer,
        synthetic: bool = False,
        checksums: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.flame = flame
        self.texture = texture
        self.renderer = renderer
        self.synthetic = bool(synthetic)
        self.checksums: dict[str, str] = dict(checksums or {})

    @classmethod
    def from_assets(cls, assets_dir: str | Path, device: torch.device | str = "cpu") -> "FaceModel":
        """Load FLAME, the landmark embedding, the FLAME texture space and the head template's UVs."""
        root = Path(assets_dir)
        if not root.is_dir():
            raise DreError(f"--assets {root} is not a folder (see `dre assets check --assets {root}`)")
        flame = Flame.from_assets(root)
        tex = load_flame_texture(root / TEXTURE_FILE)
        template = load_head_template(root / TEMPLATE_FILE)
        n_verts = int(flame.v_template.shape[0])
        if int(template.faces.max()) >= n_verts or len(template.faces) != int(flame.faces.shape[0]):
            raise DreError(
                f"{root / TEMPLATE_FILE}: {len(template.faces)} faces over vertex ids up to "
                f"{int(template.faces.max())}, but {root / FLAME_FILE} has {int(flame.faces.shape[0])} faces "
                f"and {n_verts} vertices; the template and the FLAME model do not belong together"
            )
        texture = TextureSpace(tex.mean, tex.tex_dir)
        renderer = BufferRenderer(torch.as_tensor(template.faces), face_uv_grid(template.uvs, template.uv_faces))
        sums = asset_checksums(root)  # the render files only
        return cls(flame, texture, renderer, synthetic=is_synthetic_assets(root), checksums=sums).to(device)

    @property
    def device(self) -> torch.device:
        return self.texture.mean.device

    def _flame(self, codes: FlameCodes):
        c = codes.to(self.device)
        return self.flame(c.shape, c.exp, c.pose)

    def vertices(self, codes: FlameCodes) -> torch.Tensor:
        """(B, V, 3) world-space FLAME vertices."""
        return self._flame(codes).vertices

    def ffhq_center(self, codes: FlameCodes) -> torch.Tensor:
        """(B, 3) world-space FFHQ centre of each face (see :func:`ffhq_center_from_landmarks`)."""
        return ffhq_center_from_landmarks(self._flame(codes).landmarks2d)

    @torch.no_grad()
    def render(
        self, codes: FlameCodes, tform: torch.Tensor, image_size: int = 256, center: torch.Tensor | None = None
    ) -> Buffers:
        """Buffers at ``image_size``² for faces whose crop transforms (aligned px → 224 crop px) are ``tform``.

        ``center`` (B, 3): translate each mesh so its FFHQ centre lands there (DiffusionRig's ``align_ffhq``,
        used when an edit changes pose or jaw).
        """
        if tform.shape != (codes.batch_size, 3, 3):
            raise ValueError(f"tform must be ({codes.batch_size}, 3, 3), got {tuple(tform.shape)}")
        c = codes.to(self.device)
        out = self.flame(c.shape, c.exp, c.pose)
        verts = out.vertices
        if center is not None:
            shift = center.to(verts) - ffhq_center_from_landmarks(out.landmarks2d)
            verts = verts + shift[:, None, :]
        albedo = self.texture(c.tex)
        return self.renderer(verts, c.cam, tform.to(self.device), albedo, c.light, image_size)
