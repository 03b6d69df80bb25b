"""DECA crop: the extractor's batched torch version against skimage's estimate_transform + warp (the original's
tools)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.transform import estimate_transform, resize, warp

from dre.errors import DreError
from dre.face3d.crop import _diffusionrig_lut, crop_tforms
from dre.face3d.extractor import Extractor


def deca_crop(images: list[np.ndarray], lms: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops and tforms from the extractor's own crop path (no encoder, no requantisation)."""
    return Extractor(torch.nn.Identity(), "deca", requantize=False).crop(images, lms)


def _skimage_reference(image: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DECA's test-loader crop written directly with skimage, as the independent reference."""
    left, right = lm[:, 0].min(), lm[:, 0].max()
    top, bottom = lm[:, 1].min(), lm[:, 1].max()
    old_size = (right - left + bottom - top) / 2 * 1.1
    center = np.array([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0])
    size = int(old_size * 1.25)
    src = np.array(
        [
            [center[0] - size / 2, center[1] - size / 2],
            [center[0] - size / 2, center[1] + size / 2],
            [center[0] + size / 2, center[1] - size / 2],
        ]
    )
    dst = np.array([[0, 0], [0, 223], [223, 0]])
    tform = estimate_transform("similarity", src, dst)
    crop = warp(image / 255.0, tform.inverse, output_shape=(224, 224))
    return crop.transpose(2, 0, 1), tform.params


def _faces(rng: np.random.Generator, n: int, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    images, lms = [], []
    for _ in range(n):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        # a smooth gradient on top of noise so a misplaced sample shows up as a large error
        img = (0.5 * img + 0.5 * np.linspace(0, 255, size)[None, :, None]).astype(np.uint8)
        c = rng.uniform(0.3, 0.7, 2) * size
        half = rng.uniform(0.15, 0.45) * size  # some boxes reach past the border: tests zero padding
        lm = c + rng.uniform(-half, half, (68, 2))
        images.append(img)
        lms.append(lm.astype(np.float32))
    return images, lms


def test_tform_matches_skimage_estimate_transform() -> None:
    rng = np.random.default_rng(0)
    _, lms = _faces(rng, 16, 256)
    ours = crop_tforms(torch.from_numpy(np.stack(lms)).double()).numpy()
    for lm, t in zip(lms, ours):
        _, ref = _skimage_reference(np.zeros((4, 4, 3)), lm.astype(np.float64))
        np.testing.assert_allclose(t, ref, rtol=0, atol=1e-9)


def test_crops_match_skimage_warp() -> None:
    rng = np.random.default_rng(1)
    images, lms = _faces(rng, 6, 256)
    crops, tf = deca_crop(images, lms)
    assert crops.shape == (6, 3, 224, 224) and crops.dtype == torch.float32
    assert tf.shape == (6, 3, 3)
    for img, lm, crop, t in zip(images, lms, crops.numpy(), tf.numpy()):
        ref_crop, ref_t = _skimage_reference(img, lm.astype(np.float64))
        np.testing.assert_allclose(t, ref_t, atol=1e-4)
        # float32 interpolation against skimage's float64: agreement to ~1e-5 of the [0, 1] range
        assert np.abs(crop - ref_crop).max() < 2e-4


def test_crop_of_non_square_image() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (180, 300, 3), dtype=np.uint8)
    lm = np.stack([rng.uniform(120, 220, 68), rng.uniform(40, 140, 68)], axis=1)
    crops, _ = deca_crop([img], [lm])
    ref, _ = _skimage_reference(img, lm)
    assert np.abs(crops[0].numpy() - ref).max() < 2e-4


def test_degenerate_landmarks_are_a_user_error() -> None:
    with pytest.raises(DreError, match="empty DECA crop box"):
        deca_crop([np.zeros((64, 64, 3), np.uint8)], [np.full((68, 2), 10.0)])


def test_requantize_matches_diffusionrig_resize_truncation() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    ref = (resize(img, (256, 256), anti_aliasing=True) * 255).astype(np.uint8)
    ours = _diffusionrig_lut()[img]  # what the extractor folds into its uint8 → float table
    assert (ref != img).any()  # the quirk is real: some levels drop by one
    np.testing.assert_array_equal(ours, ref)
