"""Rig specs: parsing and validation, the rotation and SH maths, and which codes each term changes.

What is checked: every term changes exactly the codes it names and by the stated amount (a yaw of +20°
turns the mesh normals 20° about the vertical axis; a light azimuth moves the shading's brightest side;
jaw:open turns the jaw about its hinge), interpolation at 0 and 1 gives the source and the target
exactly, ranges expand into sweeps, and bad specs give messages naming the parameter and its range.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dre.edit import rigmath  # noqa: E402
from dre.edit.modes import drive, parse_mode, parse_modes, parse_sweep  # noqa: E402
from dre.edit.rigcodes import edit_codes  # noqa: E402
from dre.errors import DreError  # noqa: E402
from dre.face3d.codes import FlameCodes  # noqa: E402
from dre.face3d.render import sh_shading, vertex_normals  # noqa: E402

from _edit_helpers import synthetic_codes  # noqa: E402

FIELDS = ("shape", "tex", "exp", "pose", "cam", "light")


def _changed(a: FlameCodes, b: FlameCodes) -> dict[str, torch.Tensor]:
    """Per code, which of its numbers differ (flattened)."""
    return {n: (getattr(a, n).reshape(a.batch_size, -1) != getattr(b, n).reshape(b.batch_size, -1)).any(0)
            for n in FIELDS}


def _only(changed: dict[str, torch.Tensor], allowed: dict[str, slice]) -> None:
    for name, mask in changed.items():
        keep = torch.ones_like(mask)
        if name in allowed:
            keep[allowed[name]] = False
        assert not mask[keep].any(), f"{name} changed outside {allowed.get(name)}"


# ------------------------------------------------------------------------------------------------ parsing
def test_specs_parse_to_canonical_names_and_compose_with_plus():
    modes = parse_modes("exp,light:azimuth=-60,elevation=20,intensity=1.2,jaw:open=10+pose:yaw=+20,"
                        "exp:strength=0.5,towards=target")
    assert [m.name for m in modes] == ["exp", "light:azimuth=-60,elevation=20,intensity=1.2",
                                       "pose:yaw=20+jaw:open=10", "exp:towards=target,strength=0.5"]
    assert modes[1].label == "light_azimuth-60_elevation20_intensity1.2" and "/" not in modes[3].label
    assert modes[2].params == {"pose.yaw": 20.0, "jaw.open": 10.0}
    assert not modes[1].moves_geometry and modes[2].moves_geometry
    assert [m.reads_target for m in modes] == [True, False, False, True]
    assert parse_mode("exp+light:azimuth=30").components == frozenset({"exp"})


def test_ranges_expand_into_sweep_frames():
    frames = parse_sweep("pose:yaw=-30..30:7")
    assert [m.params["pose.yaw"] for m in frames] == [-30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0]
    assert {m.sequence for m in frames} == {"pose:yaw=-30..30:7"} and [m.frame for m in frames] == list(range(7))
    assert frames[1].name == parse_mode("pose:yaw=-20").name  # a frame is the single edit of its value
    assert frames[1].rig == parse_mode("pose:yaw=-20").rig
    assert len({m.file_label for m in frames}) == 7
    assert len(parse_modes("exp,light:azimuth=-90..90:5")) == 6


def test_a_frames_target_drives_every_mode_that_reads_it():
    modes = drive(parse_modes("exp,pose:yaw=10"), 3)
    assert [(m.name, m.frame, m.target_frame) for m in modes] == [
        ("exp", 0, 0), ("exp", 1, 1), ("exp", 2, 2), ("pose:yaw=10", None, 0)]
    assert drive(parse_modes("exp"), 1) == parse_modes("exp")
    with pytest.raises(DreError, match="driven twice"):
        drive(parse_modes("exp+pose:yaw=-10..10:3"), 4)


@pytest.mark.parametrize("text, needles", [
    ("pose:yaw=120", ["yaw=120", "out of range", "[-90, 90] degrees"]),
    ("pose:tilt=5", ["unknown parameter 'tilt'", "yaw, pitch, roll"]),
    ("jaw", ["jaw: needs parameters", "open"]),
    ("jaw:open=abc", ["open='abc' is not a number"]),
    ("light:intensity=0", ["intensity=0", "(0, 4]"]),
    ("light:azimuth=10,from=target", ["cannot be combined"]),
    ("exp:strength=0.5", ["strength needs towards=REF"]),
    ("exp:towards=target,strength=1.5", ["strength=1.5", "[0, 1]"]),
    ("pose+pose:yaw=10", ["names a component twice"]),
    ("pose:yaw=-30..30:1", ["2 to 240 frames"]),
    ("pose:yaw=-30..130:5", ["yaw=130", "out of range"]),
    ("pose:yaw=1..2:3,pitch=1..2:3", ["only one parameter may be a range"]),
    ("pose:yaw=10,yaw=20", ["given twice"]),
    ("latent:x=1", ["unknown rig term 'latent'"]),
    ("pose:yaw", ["is not NAME=VALUE"]),
])
def test_bad_specs_say_what_is_allowed(text, needles):
    with pytest.raises(DreError, match="--modes") as exc:
        parse_modes(text)
    for needle in needles:
        assert needle in str(exc.value), (needle, str(exc.value))


def test_sweep_needs_a_range():
    with pytest.raises(DreError, match="--sweep: 'pose:yaw=10' has no range"):
        parse_sweep("pose:yaw=10")


# ------------------------------------------------------------------------------------------------- maths
def test_axis_angle_round_trip_including_large_angles():
    rng = np.random.default_rng(0)
    axes = rng.standard_normal((50, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.r_[rng.uniform(0, math.pi, 46), [0.0, 1e-9, math.pi - 1e-7, math.pi]]
    rvec = torch.from_numpy(axes * angles[:, None])
    back = rigmath.axis_angle_to_matrix(rigmath.matrix_to_axis_angle(rigmath.axis_angle_to_matrix(rvec)))
    assert torch.allclose(back, rigmath.axis_angle_to_matrix(rvec), atol=1e-9)


@pytest.fixture(scope="module")
def face_model(synthetic_assets):
    from dre.face3d.face_model import FaceModel

    return FaceModel.from_assets(synthetic_assets, torch.device("cpu"))


def _normals(face_model, codes: FlameCodes) -> torch.Tensor:
    return vertex_normals(face_model.vertices(codes), face_model.renderer.faces).double()


@pytest.mark.parametrize("spec, rot", [
    ("pose:yaw=20", rigmath.rot_y(20)),
    ("pose:yaw=-35", rigmath.rot_y(-35)),
    ("pose:pitch=15", rigmath.rot_x(-15)),
    ("pose:roll=10", rigmath.rot_z(10)),
])
def test_head_rotation_turns_the_normals_by_the_stated_angle(face_model, spec, rot):
    src = synthetic_codes(3, 4)
    out = edit_codes(src, {}, parse_mode(spec))
    _only(_changed(src, out), {"pose": slice(0, 3)})
    n0, n1 = _normals(face_model, src), _normals(face_model, out)
    assert torch.allclose(n1, n0 @ rot.T, atol=2e-4), float((n1 - n0 @ rot.T).abs().max())
    # independently: the best rotation taking the source's normals onto the edit's (Kabsch) has the
    # stated angle about the stated axis
    for k in range(src.batch_size):
        u, _, vt = torch.linalg.svd(n1[k].T @ n0[k])
        fit = u @ torch.diag(torch.tensor([1.0, 1.0, float(torch.det(u @ vt))], dtype=u.dtype)) @ vt
        rvec = rigmath.matrix_to_axis_angle(fit)
        angle = math.degrees(float(rvec.norm()))
        assert abs(angle - abs(float(spec.split("=")[1]))) < 0.05, angle
        axis = rvec / rvec.norm()
        want = rigmath.matrix_to_axis_angle(rot)
        assert float(axis @ (want / want.norm())) > 0.9999


def test_yaw_direction_moves_the_nose_to_the_image_right(face_model):
    src = synthetic_codes(1, 5)
    src.pose[:, :3] = 0
    v0 = face_model.vertices(src)[0]
    tip = int(v0[:, 2].argmax())  # the most forward vertex: the nose tip
    v1 = face_model.vertices(edit_codes(src, {}, parse_mode("pose:yaw=30")))[0]
    # +x is the image's right (DECA's orthographic camera): the nose moves right of the head's middle
    assert float(v1[tip, 0] - v1[:, 0].mean()) > float(v0[tip, 0] - v0[:, 0].mean()) + 0.01


def test_jaw_open_turns_the_jaw_about_its_hinge():
    src = synthetic_codes(2, 6)
    out = edit_codes(src, {}, parse_mode("jaw:open=10"))
    _only(_changed(src, out), {"pose": slice(3, 6)})
    rel = rigmath.axis_angle_to_matrix(out.pose[:, 3:]) @ rigmath.axis_angle_to_matrix(src.pose[:, 3:]).transpose(1, 2)
    assert torch.allclose(rel, rigmath.rot_x(10).expand(2, 3, 3), atol=1e-6)


def _hemisphere(n: int = 41) -> torch.Tensor:
    az = torch.linspace(-math.pi / 2, math.pi / 2, n)
    el = torch.linspace(-math.pi / 2, math.pi / 2, n)
    a, e = torch.meshgrid(az, el, indexing="ij")
    return torch.stack([torch.sin(a) * torch.cos(e), torch.sin(e), torch.cos(a) * torch.cos(e)])[None]  # (1, 3, n, n)


def _brightest(light: torch.Tensor) -> torch.Tensor:
    normals = _hemisphere()
    shade = sh_shading(normals, light.float()).mean(1)[0]
    k = int(shade.argmax())
    return normals[0].reshape(3, -1)[:, k]


@pytest.mark.parametrize("az, side", [(-60, -1), (60, 1)])
def test_light_azimuth_moves_the_brightest_side(az, side):
    src = synthetic_codes(1, 7)
    out = edit_codes(src, {}, parse_mode(f"light:azimuth={az},elevation=20"))
    _only(_changed(src, out), {"light": slice(None)})
    assert float(_brightest(out.light)[0]) * side > 0.3
    d = rigmath.light_direction(out.light)
    got_az, got_el = rigmath.direction_angles(d)
    assert abs(float(got_az[0]) - az) < 1e-6 and abs(float(got_el[0]) - 20) < 1e-6
    # the rotation keeps the light's own shape: brightness range over the sphere is unchanged
    s0, s1 = sh_shading(_hemisphere(), src.light), sh_shading(_hemisphere(), out.light)
    assert abs(float(s0.mean()) - float(s1.mean())) < 0.2 * float(s0.abs().mean()) + 1e-6


def test_sh_rotation_is_a_rotation_of_the_shading():
    light = synthetic_codes(1, 8).light.double()
    rot = rigmath.rot_y(25) @ rigmath.rot_x(-10)
    n = _hemisphere(9).double()
    turned = torch.einsum("ij,bjhw->bihw", rot, n)
    a = sh_shading(turned, rigmath.rotate_sh(light, rot[None]))
    b = sh_shading(n, light)
    assert torch.allclose(a, b, atol=1e-9)


def test_intensity_scales_all_coefficients():
    src = synthetic_codes(2, 9)
    out = edit_codes(src, {}, parse_mode("light:intensity=1.5"))
    assert torch.allclose(out.light, src.light * 1.5)
    _only(_changed(src, out), {"light": slice(None)})


@pytest.mark.parametrize("spec, allowed", [
    ("exp:towards=target,strength={s}", {"exp": slice(None), "pose": slice(3, 6)}),
    ("pose:towards=target,strength={s}", {"pose": slice(0, 3)}),
    ("light:towards=target,strength={s}", {"light": slice(None)}),
])
def test_interpolation_ends_are_the_source_and_the_target(spec, allowed):
    src, tgt = synthetic_codes(3, 10), synthetic_codes(2, 11)
    refs = {"target": tgt}
    zero = edit_codes(src, refs, parse_mode(spec.format(s=0)))
    for name in FIELDS:
        assert torch.equal(getattr(zero, name), getattr(src, name))
    mode = parse_mode(spec.format(s=1))
    for frame in (0, 1):
        one = edit_codes(src, refs, drive([mode], 2)[frame])
        _only(_changed(src, one), allowed)
        for name, sl in allowed.items():
            got = getattr(one, name).reshape(3, -1)[:, sl]
            want = getattr(tgt, name).reshape(2, -1)[frame : frame + 1, sl].expand_as(got)
            assert torch.equal(got, want), (spec, name, frame)
    half = edit_codes(src, refs, parse_mode(spec.format(s=0.5)))
    name = next(iter(allowed))
    mid = (getattr(src, name) + getattr(tgt, name)[:1]) / 2
    assert torch.allclose(getattr(half, name).reshape(3, -1)[:, allowed[name]], mid.reshape(3, -1)[:, allowed[name]])


def test_light_from_target_is_the_light_swap():
    src, tgt = synthetic_codes(2, 12), synthetic_codes(1, 13)
    a = edit_codes(src, {"target": tgt}, parse_mode("light:from=target"))
    b = edit_codes(src, {"target": tgt}, parse_mode("light"))
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name))


def test_scores_count_blocks_moved_by_numbers_as_neither_transfer_nor_leakage():
    from dre.score import metrics

    assert parse_mode("jaw:open=10").score_components() == (frozenset(), frozenset({"jaw"}))
    assert parse_mode("exp+pose:yaw=10").score_components() == (frozenset({"exp"}), frozenset({"pose"}))
    assert parse_mode("exp:towards=target,strength=0.5").score_components() == (frozenset({"exp"}), frozenset())
    assert parse_mode("exp+jaw:open=5").score_components() == (frozenset({"exp"}), frozenset())
    rng = np.random.default_rng(0)
    dims = {"exp": 50, "jaw": 3, "pose": 3, "light": 27}
    edit, src, tgt = ({b: rng.standard_normal((2, d)) for b, d in dims.items()} for _ in range(3))
    cols = metrics.block_scores(edit, src, tgt, [("exp", "jaw"), ()], moved=[(), ("pose", "jaw")])
    assert np.isfinite(cols["leak_pose"][0]) and np.isnan(cols["leak_pose"][1]) and np.isnan(cols["leak_jaw"][1])
    assert np.isnan(cols["transfer_pose"][1]) and np.isfinite(cols["leak_exp"][1]) and np.isfinite(cols["leak_light"][1])
