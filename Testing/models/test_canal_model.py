"""The shipped canal U-Net (models.canal): its weights and manifest entry, its output on a synthetic
slice, and the resampling to the pixel size it works at."""

from __future__ import annotations

import numpy as np
import pytest

from SpineAssistLib.models import registry


def test_shipped_canal_weights_match_the_manifest_and_are_small():
    spec = registry.model_spec("sag_canal_unet")
    path = registry.verified_path(spec)                 # raises unless the SHA-256 matches
    assert registry.sha256_file(path) == spec.sha256
    assert path.stat().st_size == spec.size_bytes < 2 * 1024 * 1024
    assert spec.task == "unet-segment" and spec.classes == ("background", "spinal canal")
    assert spec.input["pixel_mm"] == 0.6 and spec.input["plane"] == "sagittal"
    held_out = spec.training["data"]["recipe"][0]["held_out_left_out"]
    assert len(held_out) == 12 and "7" in held_out and "241" in held_out


def test_the_canal_model_segments_a_slice_at_its_own_size():
    from SpineAssistLib.models import load_model
    from SpineAssistLib.models.canal import CanalModel

    model = load_model("sag_canal_unet", device="cpu")
    assert isinstance(model, CanalModel)
    rng = np.random.default_rng(0)
    image = rng.normal(300, 30, (150, 110)).astype(np.float32)
    image[:, 60:75] += 900                                # a bright band where a canal would lie
    r = model.predict(image, (0.9, 0.7))
    assert r.mask.shape == image.shape and r.mask.dtype == bool
    assert r.probability.shape == image.shape and r.probability.dtype == np.float32
    assert 0.0 <= float(r.probability.min()) and float(r.probability.max()) <= 1.0
    assert np.array_equal(model.segment(image, (0.9, 0.7)), r.mask)
    with pytest.raises(ValueError, match="pixel_spacing_mm must be two finite sizes above 0"):
        model.segment(image, (0.0, 0.7))


def test_slices_are_resampled_to_0_6_mm_and_back():
    """A slice 100 rows of 0.3 mm by 80 columns of 0.9 mm is 30 by 72 mm: 50 by 120 pixels of 0.6 mm.
    A mask block 12 mm square keeps its size in mm (20 x 20 model pixels)."""
    from SpineAssistLib.models.canal import (
        from_model_grid,
        model_grid_shape,
        to_model_grid,
    )

    assert model_grid_shape((100, 80), (0.3, 0.9)) == (50, 120)
    mask = np.zeros((100, 80), bool)
    mask[20:60, 20:40] = True                             # 40 rows x 0.3 mm, 20 columns x 0.9 mm: 12 x 18 mm
    small = to_model_grid(mask, (0.3, 0.9), mask=True)
    assert small.shape == (50, 120) and small.dtype == bool and small.sum() == 20 * 30
    back = from_model_grid(small.astype(np.float32), (100, 80)) >= 0.5
    assert back.shape == (100, 80) and np.array_equal(back, mask)
    with pytest.raises(ValueError, match="image must be a 2D slice"):
        to_model_grid(np.zeros((2, 3, 4)), (0.5, 0.5))
