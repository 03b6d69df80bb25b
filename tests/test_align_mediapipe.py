"""MediaPipe back-end on real public-domain photos shipped by PyPI packages (offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("mediapipe")

from dre import align  # noqa: E402
from dre.align.ffhq import ffhq_quad  # noqa: E402
from dre.align.mediapipe_mesh import MESH_TO_IBUG, MediaPipeBackend  # noqa: E402
from dre.tables import ALIGN, ALIGN_FILE  # noqa: E402

from _align_helpers import IBUG_MIRROR, sample_photos  # noqa: E402


@pytest.fixture(scope="module")
def backend() -> MediaPipeBackend:
    be = MediaPipeBackend()
    yield be
    be.close()


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return sample_photos()


def test_table_is_a_mirror_consistent_choice() -> None:
    assert len(set(MESH_TO_IBUG)) == 68 and max(MESH_TO_IBUG) < 478


def test_astronaut_face_is_plausible(backend, photos) -> None:
    faces = backend.detect(photos["astronaut"], Path("astronaut"))
    assert len(faces) == 1 and faces[0].confidence > 0.6
    lm = faces[0].landmarks
    eye_r, eye_l = lm[36:42].mean(0), lm[42:48].mean(0)
    mouth = (lm[48] + lm[54]) / 2
    # Her face occupies roughly x 170-290, y 60-230 of the 512² photo.
    assert 170 < eye_r[0] < eye_l[0] < 290 and 80 < eye_r[1] < 130 and 80 < eye_l[1] < 130
    assert 35 < np.hypot(*(eye_l - eye_r)) < 80
    assert eye_r[1] < lm[30, 1] < mouth[1] < lm[8, 1]  # eyes above nose tip above mouth above chin
    assert abs(mouth[0] - (eye_r[0] + eye_l[0]) / 2) < 15
    assert lm[48, 0] < lm[54, 0] and lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]


def test_flip_consistency(backend, photos) -> None:
    """A mirrored photo gives the mirrored points (within 2% of the quad side for the quad)."""
    arr = photos["astronaut"]
    lm = backend.detect(arr, Path("a"))[0].landmarks
    fl = backend.detect(np.ascontiguousarray(arr[:, ::-1]), Path("a"))[0].landmarks[list(IBUG_MIRROR)].copy()
    fl[:, 0] = arr.shape[1] - 1 - fl[:, 0]
    q0, q1 = ffhq_quad(lm), ffhq_quad(fl)
    assert np.hypot(*(q0.corners - q1.corners).T).mean() < 0.02 * q0.size


@pytest.fixture(scope="module")
def aligned(tmp_path_factory, photos) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("photos")
    for name, arr in photos.items():
        Image.fromarray(arr).save(root / f"{name}.png")
    out = tmp_path_factory.mktemp("mp") / "aligned"
    align.run(align.Config(input=root, output=out, backend="mediapipe", progress=False))
    return out, ALIGN.read(out / ALIGN_FILE)[0]


def test_eyes_land_at_ffhq_positions(backend, aligned) -> None:
    """Re-detecting on the 256² output finds the eyes where the recipe put them (± 3 px)."""
    out, df = aligned
    assert (df.status == "ok").all() and len(df) == 3
    for _, r in df.iterrows():
        alm = np.asarray(r.aligned_landmarks, dtype=float).reshape(68, 2)
        want_r, want_l = alm[36:42].mean(0), alm[42:48].mean(0)
        # The FFHQ frame: eye midpoint on the vertical centre line, eye line level.
        mid = (want_r + want_l) / 2
        assert abs(mid[0] - 127.5) < 3.0, r.source
        assert abs(want_r[1] - want_l[1]) < 3.0, r.source
        arr = np.asarray(Image.open(out / r.output))
        again = backend.detect(arr, Path(r.output))
        assert again, f"no face re-detected in {r.output}"
        lm2 = again[0].landmarks
        got_r, got_l = lm2[36:42].mean(0), lm2[42:48].mean(0)
        tol = 3.0 if "camera" not in r.source else 6.0  # camera(): a 3/4 profile, half occluded
        np.testing.assert_allclose(got_r, want_r, atol=tol, err_msg=r.source)
        np.testing.assert_allclose(got_l, want_l, atol=tol, err_msg=r.source)


def test_multi_face_policy_on_a_group_photo(tmp_path: Path, photos) -> None:
    canvas = np.full((600, 1100, 3), 200, np.uint8)
    canvas[40:552, 0:512] = photos["astronaut"]
    hopper = np.asarray(Image.fromarray(photos["grace_hopper"]).resize((341, 400), Image.Resampling.LANCZOS))
    canvas[100:500, 700:1041] = hopper
    album = tmp_path / "group"
    album.mkdir()
    Image.fromarray(canvas).save(album / "group.jpg", quality=95)
    Image.fromarray(photos["grace_hopper"]).save(album / "solo.jpg", quality=95)
    res = {}
    for policy in ("largest", "all", "skip"):
        align.run(align.Config(input=album, output=tmp_path / policy, backend="mediapipe", multi_face=policy, progress=False))
        df = ALIGN.read(tmp_path / policy / ALIGN_FILE)[0]
        assert df[df.source.str.endswith("solo.jpg")].status.tolist() == ["ok"]
        res[policy] = df[df.source.str.endswith("group.jpg")]
    assert res["all"].status.tolist() == ["ok", "ok"] and res["all"].output.tolist() == ["group.png", "group_1.png"]
    sizes = [ffhq_quad(np.asarray(lm).reshape(68, 2)).size for lm in res["all"].landmarks]
    assert sizes[0] >= sizes[1]
    big = res["largest"]
    assert big.status.tolist() == ["ok"] and "2 faces found" in big.message.iloc[0]
    np.testing.assert_allclose(np.asarray(big.quad.iloc[0]), np.asarray(res["all"].quad.iloc[0]))
    assert res["skip"].status.tolist() == ["multiple_faces_skipped"]


def test_blank_image_has_no_face(backend) -> None:
    assert backend.detect(np.full((300, 300, 3), 127, np.uint8), Path("blank")) == []
