"""FaceModel: FLAME + texture space + head template + renderer — FLAME codes to physical buffers.

Everything downstream of the encoders (``dre pack`` for the training buffers, ``dre edit`` for the edited
ones) renders through this one object, so training and editing buffers come from the same code path.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dre.errors import DreError
from dre.face3d.codes import Buffers, FlameCodes
from dre.face3d.render import BufferRenderer
from dre.face3d.texture import TextureSpace, face_uv_grid
from dre.utils.hashing import sha256_file

EYE_LEFT = slice(36, 42)
EYE_RIGHT = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54


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
        from dre.face3d import assets as A
        from dre.face3d.flame import Flame
        from dre.utils.synthetic import is_synthetic_assets

        root = Path(assets_dir)
        if not root.is_dir():
            raise DreError(f"--assets {root} is not a folder (see `dre assets check --assets {root}`)")
        flame = Flame.from_assets(root)
        tex = A.load_flame_texture(root / A.TEXTURE_FILE)
        template = A.load_head_template(root / A.TEMPLATE_FILE)
        n_verts = int(flame.v_template.shape[0])
        if int(template.faces.max()) >= n_verts or len(template.faces) != int(flame.faces.shape[0]):
            raise DreError(
                f"{root / A.TEMPLATE_FILE}: {len(template.faces)} faces over vertex ids up to "
                f"{int(template.faces.max())}, but {root / A.FLAME_FILE} has {int(flame.faces.shape[0])} faces "
                f"and {n_verts} vertices; the template and the FLAME model do not belong together"
            )
        texture = TextureSpace(tex.mean, tex.tex_dir)
        renderer = BufferRenderer(torch.as_tensor(template.faces), face_uv_grid(template.uvs, template.uv_faces))
        files = [A.FLAME_FILE, A.LANDMARK_FILE, A.TEXTURE_FILE, A.TEMPLATE_FILE]
        sums = {f: sha256_file(root / f) for f in files}
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
        out = self._flame(codes)
        if out.landmarks2d is None:
            raise DreError("the FLAME model was built without a landmark embedding; ffhq_center needs one")
        return ffhq_center_from_landmarks(out.landmarks2d)

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
            if out.landmarks2d is None:
                raise DreError("re-centring needs the FLAME landmark embedding")
            shift = center.to(verts) - ffhq_center_from_landmarks(out.landmarks2d)
            verts = verts + shift[:, None, :]
        albedo = self.texture(c.tex)
        return self.renderer(verts, c.cam, tform.to(self.device), albedo, c.light, image_size)
