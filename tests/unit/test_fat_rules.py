"""The seed rule is reproduced exactly; the robust rule follows the slide's own glass."""

from __future__ import annotations

import numpy as np
import pytest

from service.pipeline.fat import (
    percentile_from_histogram,
    robust_fat_mask,
    seed_fat_count,
    seed_threshold,
)


@pytest.mark.parametrize("seed", range(6))
def test_histogram_percentile_equals_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, size=int(rng.integers(1, 5000))).astype(np.uint8)
    hist = np.bincount(values, minlength=256).astype(np.int64)
    for q in (0, 25, 50, 75, 99, 100):
        assert percentile_from_histogram(hist, q) == pytest.approx(np.percentile(values, q))


def test_seed_threshold_is_clamped_to_180_240() -> None:
    dark = np.bincount(np.full(100, 120, np.uint8), minlength=256).astype(np.int64)
    bright = np.bincount(np.full(100, 250, np.uint8), minlength=256).astype(np.int64)
    assert seed_threshold(dark).threshold == 180 and seed_threshold(dark).clamped
    assert seed_threshold(bright).threshold == 240 and seed_threshold(bright).clamped


def test_seed_fat_count_matches_a_direct_count() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(150, 256, size=10000).astype(np.uint8)
    hist = np.bincount(values, minlength=256).astype(np.int64)
    st = seed_threshold(hist)
    assert seed_fat_count(hist, st.threshold) == int((values > st.threshold).sum())


def _vacuole_image(glass: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue at 0.6 x glass with two round vacuoles at glass brightness (Beer-Lambert)."""
    yy, xx = np.mgrid[0:200, 0:200]
    vac = ((yy - 60) ** 2 + (xx - 60) ** 2 < 20**2) | ((yy - 140) ** 2 + (xx - 130) ** 2 < 25**2)
    grey = np.where(vac, glass, 0.6 * glass).astype(np.uint8)
    marrow = np.ones_like(vac)
    return grey, marrow, vac


@pytest.mark.parametrize("glass", [215.0, 232.0, 250.0])
def test_robust_rule_finds_vacuoles_whatever_the_glass_level(glass: float) -> None:
    grey, marrow, vac = _vacuole_image(glass)
    fat = robust_fat_mask(grey, marrow, glass, mpp=1.0)
    # the vacuoles are found, grown by their ~1 µm membrane and nothing else
    assert (fat & vac).sum() == vac.sum()
    assert (fat & ~vac).sum() < 0.1 * vac.sum()


def test_robust_rule_ignores_pale_specks_smaller_than_an_adipocyte() -> None:
    grey = np.full((100, 100), 140, np.uint8)
    grey[10:13, 10:13] = 235  # a 9 µm² pale speck
    fat = robust_fat_mask(grey, np.ones((100, 100), bool), 235.0, mpp=1.0)
    assert not fat.any()
