"""The physical-buffer renderer: FLAME mesh + codes → DiffusionRig's rendered / normal / albedo buffers.

DiffusionRig's published models were trained on buffers made by DECA's ``SRenderY`` with the SH light
switched on and the mesh mapped back into the aligned 256² image. This module reproduces that path:

* DECA's orthographic camera: ``(s(x+tx), -s(y+ty), -s z)`` in the normalised 224 crop, then
  ``q = (p/2 + 1/2)·224`` → ``inverse(tform) @ [q, 1]`` → aligned-image pixels → ``x/size·2 - 1``
  (DECA's ``transform_points``; its half-pixel inconsistency is kept on purpose);
* ``z + 10`` and ``x, y → -x, -y`` into PyTorch3D's NDC, rasterised by PyTorch3D's ``rasterize_meshes``
  (one face per pixel, no blur, no perspective correction, no culling);
* barycentric interpolation of the per-vertex UVs and of the area-weighted *world* vertex normals, not
  re-normalised after interpolation;
* albedo = ``grid_sample(uv_albedo, uv, align_corners=False)``; shading = 9-band SH with DECA's constants;
  rendered = albedo · shading; every buffer · coverage; nothing clamped.

On CUDA the rasteriser runs PyTorch3D's coarse-to-fine kernels directly. PyTorch3D has no binned CPU
path, and its naive CPU kernel tests every face against every pixel (seconds per 256² FLAME image), so on
CPU the image is cut into tiles and each tile is rasterised by the same ``rasterize_meshes`` call with only
the faces whose box touches it, mapped affinely onto the tile's own NDC square. Orthographic
barycentrics and depths are invariant under that map, so the result is the same rasterisation up to
float rounding on exact edge ties (``tests/test_face3d_render.py`` compares the two).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pytorch3d.renderer.mesh import rasterize_meshes
from pytorch3d.structures import Meshes
from torch import nn

from dre.face3d.codes import Buffers

CROP_SIZE = 224
Z_OFFSET = 10.0
"""DECA pushes the projected mesh to z ≈ 10 before rasterising (any positive depth would do)."""

SH_CONSTANTS: tuple[float, ...] = (
    1 / math.sqrt(4 * math.pi),
    *[(2 * math.pi / 3) * math.sqrt(3 / (4 * math.pi))] * 3,
    *[(math.pi / 4) * 3 * math.sqrt(5 / (12 * math.pi))] * 3,
    (math.pi / 4) * (3 / 2) * math.sqrt(5 / (12 * math.pi)),
    (math.pi / 4) * (1 / 2) * math.sqrt(5 / (4 * math.pi)),
)
"""DECA's ``constant_factor``: Lambertian-convolved SH normalisation for bands 0, 1 (×3), 2 (×5)."""


# --------------------------------------------------------------------------------------------- geometry
def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (B, V, 3), as DECA's ``util.vertex_normals``.

    DECA adds, at each corner, the cross product of the two edges leaving it; for a triangle all three
    equal ``(v1-v0)×(v2-v0)`` (twice the area times the unit normal), so the sum is accumulated once per
    face and normalised with ``eps=1e-6``.
    """
    b, v, _ = verts.shape
    fv = verts[:, faces]  # (B, F, 3, 3)
    fn = torch.cross(fv[:, :, 1] - fv[:, :, 0], fv[:, :, 2] - fv[:, :, 0], dim=-1)  # (B, F, 3)
    out = torch.zeros_like(verts)
    idx = faces.reshape(-1)  # (3F,)
    contrib = fn.unsqueeze(2).expand(-1, -1, 3, -1).reshape(b, -1, 3)
    out.index_add_(1, idx, contrib)
    return F.normalize(out, dim=-1, eps=1e-6)


def orthographic_project(verts: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """DECA's ``batch_orth_proj`` followed by its y/z flip: normalised crop coordinates (x right, y down)."""
    s = cam[:, None, 0:1]
    xy = s * (verts[..., :2] + cam[:, None, 1:3])
    z = s * verts[..., 2:3]
    return torch.cat([xy[..., :1], -xy[..., 1:2], -z], dim=-1)


def crop_to_image(points: torch.Tensor, tform: torch.Tensor, image_size: int, crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Map crop-normalised points into the aligned image's normalised [-1, 1] frame (z unchanged).

    ``tform`` (B, 3, 3) maps aligned-image pixels → crop pixels; DECA renders "in the original image" by
    applying its inverse to ``(p/2 + 1/2)·crop`` and dividing by the output size.
    """
    q = (points[..., :2] * 0.5 + 0.5) * crop_size
    inv = torch.linalg.inv(tform.to(torch.float64)).to(points.dtype)
    xy = torch.einsum("bij,bvj->bvi", inv[:, :2, :2], q) + inv[:, None, :2, 2]
    xy = xy / image_size * 2 - 1
    return torch.cat([xy, points[..., 2:3]], dim=-1)


# ------------------------------------------------------------------------------------------- rasteriser
def _rasterize_direct(face_verts: torch.Tensor, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch3D ``rasterize_meshes`` on (B, F, 3, 3) NDC face vertices; (B,H,W) local face ids, (B,H,W,3) bary."""
    b, nf = face_verts.shape[:2]
    verts = face_verts.reshape(b, nf * 3, 3)
    faces = torch.arange(nf * 3, device=face_verts.device).reshape(1, nf, 3).expand(b, -1, -1)
    p2f, _, bary, _ = rasterize_meshes(
        Meshes(verts=verts, faces=faces),
        image_size=image_size,
        blur_radius=0.0,
        faces_per_pixel=1,
        bin_size=None,
        max_faces_per_bin=None,
        perspective_correct=False,
    )
    p2f = p2f[..., 0]
    offs = (torch.arange(b, device=p2f.device) * nf).view(b, 1, 1)
    local = torch.where(p2f >= 0, p2f - offs, p2f)
    return local, bary[..., 0, :]


def _rasterize_tiled(face_verts: torch.Tensor, image_size: int, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as :func:`_rasterize_direct`, rasterising ``tile``² windows with only their faces."""
    b, nf = face_verts.shape[:2]
    s = image_size
    nt = -(-s // tile)  # tiles per side; the last row/column may overhang and is cropped away
    dev = face_verts.device
    # continuous pixel-centre coordinates of the face corners (pixel c has centre x_ndc = 1 - (2c+1)/S)
    px = ((1 - face_verts[..., 0]) * s - 1) / 2
    py = ((1 - face_verts[..., 1]) * s - 1) / 2
    x0, x1 = px.amin(-1) - 1, px.amax(-1) + 1  # one pixel of margin against rounding
    y0, y1 = py.amin(-1) - 1, py.amax(-1) + 1
    starts = torch.arange(nt, device=dev) * tile
    ends = starts + tile - 1
    hit_x = (x1[:, None, :] >= starts[None, :, None]) & (x0[:, None, :] <= ends[None, :, None])  # (B, nt, F)
    hit_y = (y1[:, None, :] >= starts[None, :, None]) & (y0[:, None, :] <= ends[None, :, None])
    hit = hit_y[:, :, None, :] & hit_x[:, None, :, :]  # (B, ty, tx, F)
    bi, ty, tx, fi = hit.nonzero(as_tuple=True)  # row-major: grouped by (b, ty, tx)
    counts_t = hit.sum(-1).reshape(-1)
    busy = (counts_t > 0).nonzero().flatten()  # tiles without faces stay background, unrasterised
    counts = counts_t[busy].tolist()
    fv = face_verts[bi, fi].clone()  # (P, 3, 3)
    # global NDC → the tile's own NDC square (see module docstring): x' = (x - 1 + 2 c0 / S) S / t + 1
    c0 = (tx * tile).to(fv.dtype)[:, None]
    r0 = (ty * tile).to(fv.dtype)[:, None]
    fv[..., 0] = (fv[..., 0] - 1 + 2 * c0 / s) * (s / tile) + 1
    fv[..., 1] = (fv[..., 1] - 1 + 2 * r0 / s) * (s / tile) + 1
    local = torch.full((b * nt * nt, tile, tile), -1, dtype=torch.int64, device=dev)
    bary = face_verts.new_full((b * nt * nt, tile, tile, 3), -1.0)
    if counts:
        verts_list = list(fv.reshape(-1, 3).split([c * 3 for c in counts]))
        faces_list = [torch.arange(c * 3, device=dev).reshape(c, 3) for c in counts]
        p2f, _, tb, _ = rasterize_meshes(
            Meshes(verts=verts_list, faces=faces_list),
            image_size=tile,
            blur_radius=0.0,
            faces_per_pixel=1,
            bin_size=0,
            perspective_correct=False,
        )
        p2f = p2f[..., 0]  # indices into the packed faces of the busy tiles, i.e. into fi
        local[busy] = torch.where(p2f >= 0, fi[p2f.clamp(min=0)], torch.full_like(p2f, -1))
        bary[busy] = tb[..., 0, :]

    def untile(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(b, nt, nt, tile, tile, *x.shape[3:]).transpose(2, 3)
        return x.reshape(b, nt * tile, nt * tile, *x.shape[5:])[:, :s, :s]

    return untile(local), untile(bary)


def rasterize(face_verts: torch.Tensor, image_size: int, tile: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise (B, F, 3, 3) face corners given in PyTorch3D NDC (+x left, +y up, z = depth, nearer = smaller).

    Returns per-pixel face ids (B, H, W) (−1 = background; ids index the F faces of that image) and
    barycentric coordinates (B, H, W, 3). ``tile``: None = direct on CUDA, 32-pixel tiles on CPU; 0 forces
    the direct call.
    """
    if tile is None:
        tile = 0 if face_verts.is_cuda else 32
    if tile <= 0 or tile >= image_size:
        return _rasterize_direct(face_verts, image_size)
    return _rasterize_tiled(face_verts, image_size, tile)


# ------------------------------------------------------------------------------------------------ shading
def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """(B, 9, H, W) DECA SH basis of (B, 3, H, W) normals, constants included."""
    nx, ny, nz = normals[:, 0], normals[:, 1], normals[:, 2]
    c = SH_CONSTANTS
    return torch.stack(
        [
            torch.full_like(nx, c[0]),
            c[1] * nx,
            c[2] * ny,
            c[3] * nz,
            c[4] * nx * ny,
            c[5] * nx * nz,
            c[6] * ny * nz,
            c[7] * (nx * nx - ny * ny),
            c[8] * (3 * nz * nz - 1),
        ],
        dim=1,
    )


def sh_shading(normals: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) shading Σ_k light[b, k, c]·basis_k — unclamped, as DECA's ``add_SHlight``."""
    return torch.einsum("bkhw,bkc->bchw", sh_basis(normals), light.to(normals.dtype))


# ------------------------------------------------------------------------------------------------ renderer
class BufferRenderer(nn.Module):
    """Renders the three buffers for a fixed topology (faces + per-corner UVs of the head template)."""

    def __init__(self, faces: torch.Tensor, face_uv_grid: torch.Tensor, tile: int | None = None) -> None:
        """``faces`` (F, 3) vertex ids; ``face_uv_grid`` (F, 3, 2) per-corner UVs already in ``grid_sample``
        coordinates (see :func:`dre.face3d.texture.face_uv_grid`)."""
        super().__init__()
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
        if face_uv_grid.shape != (faces.shape[0], 3, 2):
            raise ValueError(f"face UVs must be ({faces.shape[0]}, 3, 2), got {tuple(face_uv_grid.shape)}")
        self.register_buffer("faces", faces.long(), persistent=False)
        self.register_buffer("face_uvs", face_uv_grid.float(), persistent=False)
        self.tile = tile

    def forward(
        self,
        verts: torch.Tensor,
        cam: torch.Tensor,
        tform: torch.Tensor,
        albedo_uv: torch.Tensor,
        light: torch.Tensor,
        image_size: int = 256,
    ) -> Buffers:
        """World-space ``verts`` (B, V, 3), ``cam`` (B, 3), ``tform`` (B, 3, 3) image→crop, ``albedo_uv``
        (B, 3, U, U), ``light`` (B, 9, 3) → :class:`Buffers` at ``image_size``²."""
        verts = verts.float()
        b = verts.shape[0]
        normals = vertex_normals(verts, self.faces)
        img = crop_to_image(orthographic_project(verts, cam.float()), tform.to(verts.device), image_size)
        ndc = torch.cat([-img[..., :2], img[..., 2:3] + Z_OFFSET], dim=-1)
        pix_face, bary = rasterize(ndc[:, self.faces], image_size, self.tile)

        # per-corner attributes of every face of every image: world normal (3) and UV (2)
        nf = self.faces.shape[0]
        corner = torch.cat([normals[:, self.faces], self.face_uvs.expand(b, -1, -1, -1)], dim=-1).reshape(b * nf, 3, 5)
        mask = pix_face >= 0
        hit = mask.nonzero(as_tuple=True)  # interpolate covered pixels only
        packed = pix_face[hit] + hit[0] * nf
        vals = (bary[hit].unsqueeze(-1) * corner[packed]).sum(1)  # (P, 5); normals not re-normalised
        attrs = verts.new_zeros(b, image_size, image_size, 5)
        attrs[hit] = vals
        alpha = mask.unsqueeze(1).to(verts.dtype)
        normal = attrs[..., :3].permute(0, 3, 1, 2).contiguous()
        uv = attrs[..., 3:]

        albedo = F.grid_sample(albedo_uv.float(), uv, mode="bilinear", padding_mode="zeros", align_corners=False)
        shading = sh_shading(normal, light.float())
        return Buffers(rendered=albedo * shading * alpha, normal=normal, albedo=albedo * alpha, alpha=alpha)
