"""Rotation and lighting maths of the rig: yaw/pitch/roll ⟷ axis-angle, and the SH light's direction.

Frames. FLAME's world frame is the camera's for DECA's orthographic camera: +x is the image's right, +y
is up, +z points from the face towards the camera. Head rotations are composed in that frame, on the
left of the source's own rotation (``R = ΔR · R_source``), so ``yaw=20`` turns the head 20° further
whatever its starting pose, and the mesh's normals turn by exactly ``ΔR``.

Lighting ("dominant-direction" parameterisation, docs/rig.md). DECA's light is 9 SH coefficients × RGB,
shading(n) = Σ_k c_k · L_k · Y_k(n) with DECA's constants c_k. Its band-1 part is a vector per colour,
v_c = (c1·L1, c2·L2, c3·L3); the *light direction* is v = Σ_c v_c normalised, read as azimuth (angle
about the vertical axis from the camera direction, + towards the image's right) and elevation (above
the horizon). Setting azimuth/elevation rotates the whole SH light (bands 1 and 2; band 0 is
direction-free) by the turntable rotation that carries the old direction onto the new one, so the
light's colour, softness and contrast stay the source's; intensity scales all 27 numbers.
"""

from __future__ import annotations

import math

import torch
from pytorch3d import transforms

from dre.face3d.render import SH_CONSTANTS


def axis_angle_to_matrix(rvec: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle → (..., 3, 3) rotation (pytorch3d's Rodrigues), in float64 for exact round trips."""
    return transforms.axis_angle_to_matrix(rvec.to(torch.float64))


def matrix_to_axis_angle(rot: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation → (..., 3) axis-angle with angle in [0, π] (pytorch3d, through the unit
    quaternion with w ≥ 0, so stable near 0 and near π), in float64."""
    return transforms.matrix_to_axis_angle(rot.to(torch.float64))


def rot_x(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)


def rot_y(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)


def rot_z(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)


def head_rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> torch.Tensor:
    """ΔR (3, 3) for degrees in the camera frame: roll, then pitch (+ = nose up), then yaw (+ = nose right).

    Rotating +z (the nose) about +y moves it to +x, the image's right; a nose-up pitch is a rotation
    about −x; +roll about +z turns the image counter-clockwise.
    """
    return rot_y(yaw) @ rot_x(-pitch) @ rot_z(roll)


def rotate_pose(rvec: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Axis-angle (B, 3) of ``delta @ R(rvec)``, in rvec's dtype."""
    out = matrix_to_axis_angle(delta.to(rvec.device) @ axis_angle_to_matrix(rvec))
    return out.to(rvec.dtype)


def lerp(a: torch.Tensor, b: torch.Tensor, s: float) -> torch.Tensor:
    """``a·(1−s) + b·s``: exactly ``a`` at s = 0 and exactly ``b`` at s = 1."""
    if s == 0.0:
        return a.clone()
    if s == 1.0:
        return b.clone().expand_as(a).clone()
    return a * (1.0 - s) + b * s


# ------------------------------------------------------------------------------------------------ lighting
def _c() -> torch.Tensor:
    return torch.tensor(SH_CONSTANTS, dtype=torch.float64)


def light_direction(light: torch.Tensor) -> torch.Tensor:
    """(B, 3) unit direction the light comes from (see the module docstring); frontal (0, 0, 1) when the
    light has no directional part."""
    c = _c().to(light.device)
    v = (light.to(torch.float64)[:, 1:4, :] * c[1:4, None]).sum(-1)  # (B, 3): colour-summed band-1 vector
    n = v.norm(dim=-1, keepdim=True)
    front = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64, device=light.device).expand_as(v)
    return torch.where(n > 1e-9, v / n.clamp_min(1e-12), front)


def direction_angles(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(azimuth, elevation) in degrees of (B, 3) unit directions."""
    az = torch.rad2deg(torch.atan2(d[:, 0], d[:, 2]))
    el = torch.rad2deg(torch.asin(d[:, 1].clamp(-1, 1)))
    return az, el


def turntable(azimuth: float, elevation: float) -> torch.Tensor:
    """The rotation carrying the camera direction (0, 0, 1) to the direction (azimuth, elevation)."""
    return rot_y(azimuth) @ rot_x(-elevation)


def rotate_sh(light: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """(B, 9, 3) SH light turned by (B, 3, 3) rotations: new shading(n) = old shading(Rᵀ n).

    Band 1 is a vector (v' = R v); band 2 is the traceless quadratic form A of the five ``n``-products
    (shading₂(n) = nᵀ A n on unit normals), so A' = R A Rᵀ; band 0 does not depend on n.
    """
    c = _c().to(light.device)
    L = light.to(torch.float64)
    R = rot.to(torch.float64).to(light.device)
    out = L.clone()
    v = L[:, 1:4, :] * c[1:4, None]  # (B, 3, C)
    out[:, 1:4, :] = (R @ v) / c[1:4, None]
    a4, a5, a6, a7, a8 = (L[:, k, :] * c[k] for k in range(4, 9))  # (B, C) each
    A = torch.stack([
        torch.stack([a7 - a8, a4 / 2, a5 / 2], -1),
        torch.stack([a4 / 2, -a7 - a8, a6 / 2], -1),
        torch.stack([a5 / 2, a6 / 2, 2 * a8], -1),
    ], -2)  # (B, C, 3, 3)
    A2 = R[:, None] @ A @ R[:, None].transpose(-1, -2)
    out[:, 4, :] = 2 * A2[..., 0, 1] / c[4]
    out[:, 5, :] = 2 * A2[..., 0, 2] / c[5]
    out[:, 6, :] = 2 * A2[..., 1, 2] / c[6]
    out[:, 7, :] = (A2[..., 0, 0] - A2[..., 1, 1]) / (2 * c[7])
    out[:, 8, :] = A2[..., 2, 2] / (2 * c[8])
    return out.to(light.dtype)


def relight(light: torch.Tensor, azimuth: float | None, elevation: float | None, intensity: float | None) -> torch.Tensor:
    """The light with its direction set to (azimuth, elevation) (None keeps the source's own value of
    that angle, per face) and all coefficients scaled by ``intensity`` (None: 1)."""
    out = light
    if azimuth is not None or elevation is not None:
        d = light_direction(light)
        az0, el0 = direction_angles(d)
        rots = []
        for b in range(light.shape[0]):
            az = float(az0[b]) if azimuth is None else float(azimuth)
            el = float(el0[b]) if elevation is None else float(elevation)
            rots.append(turntable(az, el) @ turntable(float(az0[b]), float(el0[b])).T)
        out = rotate_sh(light, torch.stack(rots))
    if intensity is not None:
        out = out * float(intensity)
    return out
