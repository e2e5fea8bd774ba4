"""Contract: every slide adapter returns the same pixels for the same level-0 region.

One synthetic slide is written as SVS (OpenSlide), DICOM-WSI (wsidicom) and PNG (plain image);
each adapter must report the same size and µm/px and, for any level-0 box, the same pixels
within JPEG tolerance, at level 0 and at downsample 4.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from conftest import SyntheticSlideFiles

from adapters.slides.registry import open_slide
from service.domain.geometry import Box
from service.ports.slides import SlideSource

# JPEG Q90 (YCbCr 4:2:2) of a noisy, nucleus-rich scene: measured up to ~4.5 grey levels at
# level 0 and ~6 at downsample 4, where nuclei are a pixel or two wide. A one-pixel shift costs
# far more (see test_alignment_is_exact).
MAX_MEAN_ABS_DIFF = 6.0
MAX_MEAN_ABS_DIFF_DOWNSAMPLED = 8.0
FORMATS = ("svs", "dicom", "png")
BOXES = (
    Box(300, 200, 700, 500),  # interior, not tile aligned
    Box(0, 0, 256, 256),  # one whole tile
    Box(1801, 1303, 247, 233),  # touching the bottom-right corner
)


def _open(files: SyntheticSlideFiles, fmt: str) -> SlideSource:
    if fmt == "svs":
        return open_slide(str(files.svs))
    if fmt == "dicom":
        return open_slide(str(files.dicom_dir))
    return open_slide(str(files.png), mpp_override=files.mpp)


@pytest.fixture(scope="module")
def slides(synthetic_slides: SyntheticSlideFiles) -> Iterator[dict[str, SlideSource]]:
    opened = {fmt: _open(synthetic_slides, fmt) for fmt in FORMATS}
    yield opened
    for slide in opened.values():
        slide.close()


def _level_with_downsample(slide: SlideSource, downsample: float) -> int:
    matches = [lv.index for lv in slide.info.levels if abs(lv.downsample - downsample) < 1e-3]
    assert matches, f"{slide.info.format} has no level with downsample {downsample}"
    return matches[0]


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_geometry_and_resolution(
    slides: dict[str, SlideSource], synthetic_slides: SyntheticSlideFiles, fmt: str
) -> None:
    info = slides[fmt].info
    assert (info.width_px0, info.height_px0) == (
        synthetic_slides.width_px0,
        synthetic_slides.height_px0,
    )
    assert info.mpp == pytest.approx((synthetic_slides.mpp, synthetic_slides.mpp), rel=1e-6)
    assert info.levels[0].downsample == 1.0
    assert _level_with_downsample(slides[fmt], 4.0) >= 1


@pytest.mark.parametrize("downsample", [1.0, 4.0])
@pytest.mark.parametrize("box", BOXES, ids=lambda b: f"{b.x_px0}_{b.y_px0}")
def test_same_pixels_for_same_level0_box(
    slides: dict[str, SlideSource], box: Box, downsample: float
) -> None:
    reference = slides["png"]
    expected = reference.read_region(box, _level_with_downsample(reference, downsample))
    assert expected.shape == (
        -(-box.h_px0 // int(downsample)),
        -(-box.w_px0 // int(downsample)),
        3,
    )
    tolerance = MAX_MEAN_ABS_DIFF if downsample == 1.0 else MAX_MEAN_ABS_DIFF_DOWNSAMPLED
    for fmt in ("svs", "dicom"):
        got = slides[fmt].read_region(box, _level_with_downsample(slides[fmt], downsample))
        assert got.dtype == np.uint8
        assert got.shape == expected.shape, fmt
        assert _mean_abs_diff(got, expected) < tolerance, fmt


@pytest.mark.parametrize("downsample", [1.0, 4.0])
@pytest.mark.parametrize("fmt", ["svs", "dicom"])
def test_alignment_is_exact(slides: dict[str, SlideSource], fmt: str, downsample: float) -> None:
    """The same box matches better than the box moved by one pixel of that level."""
    box = Box(300, 200, 700, 500)
    reference = slides["png"]
    level_ref = _level_with_downsample(reference, downsample)
    got = slides[fmt].read_region(box, _level_with_downsample(slides[fmt], downsample))
    aligned = _mean_abs_diff(got, reference.read_region(box, level_ref))
    step = int(downsample)
    for dx, dy in ((step, 0), (-step, 0), (0, step), (0, -step)):
        moved = Box(box.x_px0 + dx, box.y_px0 + dy, box.w_px0, box.h_px0)
        assert aligned < 0.8 * _mean_abs_diff(got, reference.read_region(moved, level_ref))


@pytest.mark.parametrize("fmt", FORMATS)
def test_pixels_match_the_rendered_scene(
    slides: dict[str, SlideSource], synthetic_slides: SyntheticSlideFiles, fmt: str
) -> None:
    box = Box(512, 384, 512, 384)
    truth = synthetic_slides.scene.render_rgb(box, 1.0)
    assert _mean_abs_diff(slides[fmt].read_region(box, 0), truth) < MAX_MEAN_ABS_DIFF


@pytest.mark.parametrize("fmt", FORMATS)
def test_outside_the_image_is_white(slides: dict[str, SlideSource], fmt: str) -> None:
    slide = slides[fmt]
    w, h = slide.info.width_px0, slide.info.height_px0
    region = slide.read_region(Box(w - 100, h - 60, 200, 120), 0)
    assert region.shape == (120, 200, 3)
    assert (region[60:, :] == 255).all()
    assert (region[:, 100:] == 255).all()
    assert region[:60, :100].mean() < 250  # the inside is tissue, not padding
    far = slide.read_region(Box(-500, -500, 64, 64), 0)
    assert (far == 255).all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_thumbnail_fits_and_keeps_aspect(slides: dict[str, SlideSource], fmt: str) -> None:
    thumb = slides[fmt].thumbnail(256)
    assert thumb.dtype == np.uint8
    assert thumb.shape == (192, 256, 3)


def test_thumbnails_agree(slides: dict[str, SlideSource]) -> None:
    thumbs = {fmt: slide.thumbnail(200) for fmt, slide in slides.items()}
    assert _mean_abs_diff(thumbs["svs"], thumbs["png"]) < MAX_MEAN_ABS_DIFF
    assert _mean_abs_diff(thumbs["dicom"], thumbs["png"]) < MAX_MEAN_ABS_DIFF
