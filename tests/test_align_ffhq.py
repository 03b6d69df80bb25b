"""FFHQ recipe geometry against hand computation, determinism, pre-shrink vs naive, padding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dre.align.ffhq import align_face, ffhq_quad

from _align_helpers import marker_centroid, render_face, similarity, template_landmarks

# Hand computation for the template (eyes (∓0.5, 0), mouth corners (∓0.4, 1)), see template_landmarks:
# quad half-side 2, centre (0, 0.1) → output scale 256 / 4 = 64 px per unit; the quad centre maps to the
# output centre (area coordinate 128 = index 127.5). Eye centre (−0.5, 0) → 127.5 + 64·(−0.5, −0.1).
EXPECTED = {
    "eye_r": np.array([127.5 - 32.0, 127.5 - 6.4]),
    "eye_l": np.array([127.5 + 32.0, 127.5 - 6.4]),
    "mouth_r": np.array([127.5 - 25.6, 127.5 + 57.6]),
    "mouth_l": np.array([127.5 + 25.6, 127.5 + 57.6]),
}


def _points(lm: np.ndarray) -> dict[str, np.ndarray]:
    return {"eye_r": lm[36:42].mean(0), "eye_l": lm[42:48].mean(0), "mouth_r": lm[48], "mouth_l": lm[54]}


def test_quad_of_template_by_hand() -> None:
    q = ffhq_quad(template_landmarks())
    np.testing.assert_allclose(q.corners, [[-2, -1.9], [-2, 2.1], [2, 2.1], [2, -1.9]], atol=1e-12)
    assert q.size == pytest.approx(4.0)


def test_quad_follows_similarity() -> None:
    """Rotating/scaling/translating the landmarks moves the quad by the same similarity."""
    base = ffhq_quad(template_landmarks()).corners
    for s, ang, t in [(50.0, 30.0, (100.0, 200.0)), (3.0, -80.0, (-5.0, 7.0))]:
        q = ffhq_quad(similarity(template_landmarks(), s, ang, t))
        np.testing.assert_allclose(q.corners, similarity(base, s, ang, t), atol=1e-9)
        assert q.size == pytest.approx(4.0 * s)


def test_quad_uses_larger_of_eye_and_mouth_distances() -> None:
    lm = template_landmarks().copy()
    lm[48:68, 1] += 2.0  # mouth 3 units below the eyes → half-side 1.8·3 = 5.4 > 2·1
    q = ffhq_quad(lm)
    assert q.size == pytest.approx(2 * 5.4)
    np.testing.assert_allclose(q.corners.mean(0), [0.0, 0.3], atol=1e-12)


def test_degenerate_landmarks_raise() -> None:
    with pytest.raises(ValueError):
        ffhq_quad(np.zeros((68, 2)))
    with pytest.raises(ValueError):
        ffhq_quad(np.zeros((10, 2)))


@pytest.mark.parametrize(
    "scale,angle,t,wh",
    [
        (100.0, 0.0, (300.0, 260.0), (600, 560)),  # no shrink, no padding
        (140.0, 25.0, (420.0, 330.0), (800, 700)),  # rotated
        (330.0, -35.0, (1100.0, 1000.0), (2200, 2000)),  # big photo: pre-shrink ×2
        (60.0, 12.0, (150.0, 120.0), (300, 260)),  # face near the edge: reflect padding
    ],
)
def test_markers_land_where_hand_computation_says(scale, angle, t, wh) -> None:
    lm = similarity(template_landmarks(), scale, angle, t)
    img = render_face(lm, *wh)
    res = align_face(img, lm, 256)
    assert res.image.size == (256, 256) and res.image.mode == "RGB"
    out = np.asarray(res.image)
    for key, p in _points(lm).items():
        mapped = res.map_points(p[None])[0]
        np.testing.assert_allclose(mapped, EXPECTED[key], atol=1e-6)  # the affine matches the hand result
        found = marker_centroid(out, EXPECTED[key])
        np.testing.assert_allclose(found, EXPECTED[key], atol=0.35)  # and the pixels agree


def test_aligned_landmarks_are_similarity_invariant() -> None:
    a = similarity(template_landmarks(), 100.0, 0.0, (300.0, 300.0))
    b = similarity(template_landmarks(), 230.0, 61.0, (700.0, 560.0))
    ra = align_face(Image.new("RGB", (600, 600), (90, 90, 90)), a, 256)
    rb = align_face(Image.new("RGB", (1400, 1100), (90, 90, 90)), b, 256)
    np.testing.assert_allclose(ra.map_points(a), rb.map_points(b), atol=1e-6)


def test_deterministic_bytes() -> None:
    lm = similarity(template_landmarks(), 120.0, 10.0, (400.0, 300.0))
    img = render_face(lm, 800, 640)

    def png() -> bytes:
        buf = io.BytesIO()
        align_face(img, lm, 256).image.save(buf, format="PNG")
        return buf.getvalue()

    assert png() == png()


def test_pre_shrink_matches_naive_variant() -> None:
    """The integer pre-shrink is a speed-up: the geometry is identical, the pixels nearly so."""
    lm = similarity(template_landmarks(), 330.0, 15.0, (1100.0, 1000.0))
    img = render_face(lm, 2200, 2000, markers=False)
    fast = align_face(img, lm, 256)
    naive = align_face(img, lm, 256, pre_shrink=False)
    np.testing.assert_allclose(fast.matrix, naive.matrix, atol=1e-9)
    diff = np.abs(np.asarray(fast.image).astype(int) - np.asarray(naive.image).astype(int))
    assert diff.mean() < 1.5, diff.mean()


def test_padding_is_blurred_towards_median() -> None:
    """Past the photo edge the recipe reflect-pads and fades to a blurred median, no hard seams/black."""
    lm = similarity(template_landmarks(), 60.0, 0.0, (70.0, 140.0))  # quad leaves the image on the left
    img = render_face(lm, 300, 300, markers=False)
    res = align_face(img, lm, 256)
    out = np.asarray(res.image).astype(float)
    left = out[:, :20]
    assert left.min() > 10, "padding must not be black"
    # Far into the padding the content is flat (median fill): little variation along the edge column.
    assert out[:, 0].std() < out[:, 128].std()


def test_output_size_and_non_rgb_input() -> None:
    lm = similarity(template_landmarks(), 100.0, 0.0, (300.0, 300.0))
    img = render_face(lm, 600, 600).convert("L")
    res = align_face(img, lm, 128)
    assert res.image.size == (128, 128) and res.image.mode == "RGB"
    assert isinstance(res.image, Image.Image)
