"""Slide adapters: µm/px policy, DICOM identity, level arithmetic, content-based detection."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SyntheticSlideFiles

from adapters.slides.mpp import resolve_mpp
from adapters.slides.regions import LevelWindow, level_window, read_padded
from adapters.slides.registry import list_slides, open_slide
from service.domain.errors import InvalidInput, MissingResolution
from service.domain.geometry import Box
from service.domain.slide import Level

# --- µm/px policy -------------------------------------------------------------------------


def test_file_mpp_is_used_without_override() -> None:
    got = resolve_mpp((0.25, 0.26), None, "s.svs")
    assert (got.mpp, got.source, got.mpp_file) == ((0.25, 0.26), "file", None)


def test_override_within_one_percent_keeps_the_file_value() -> None:
    got = resolve_mpp((0.5, 0.5), 0.504, "s.svs")
    assert got.mpp == (0.5, 0.5)
    assert got.source == "file"


def test_conflicting_override_wins_and_the_file_value_is_kept() -> None:
    got = resolve_mpp((0.5, 0.5), 0.25, "s.svs")
    assert (got.mpp, got.source, got.mpp_file) == ((0.25, 0.25), "file+override", (0.5, 0.5))


def test_override_alone() -> None:
    got = resolve_mpp(None, 0.5, "s.png")
    assert (got.mpp, got.source, got.mpp_file) == ((0.5, 0.5), "override", None)


def test_no_mpp_anywhere_asks_for_mpp() -> None:
    with pytest.raises(MissingResolution, match="--mpp"):
        resolve_mpp((None, None), None, "s.tif")


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), 1e6])
def test_implausible_override_is_rejected(bad: float) -> None:
    with pytest.raises(InvalidInput, match="--mpp"):
        resolve_mpp((0.5, 0.5), bad, "s.svs")


@pytest.mark.parametrize("which", ["svs", "dicom"])
def test_override_conflict_is_reported_in_slide_info(
    synthetic_slides: SyntheticSlideFiles, which: str
) -> None:
    ref = synthetic_slides.svs if which == "svs" else synthetic_slides.dicom_dir
    slide = open_slide(str(ref), mpp_override=0.25)
    try:
        assert slide.info.mpp == (0.25, 0.25)
        assert slide.info.mpp_source == "file+override"
        assert slide.info.mpp_file == pytest.approx((0.5, 0.5))
    finally:
        slide.close()


# --- level arithmetic ----------------------------------------------------------------------


def test_level_window_floors_the_origin_and_ceils_the_size() -> None:
    assert level_window(Box(301, 7, 403, 1), 4.0) == LevelWindow(75, 1, 101, 1)
    assert level_window(Box(0, 0, 16, 16), 16.0) == LevelWindow(0, 0, 1, 1)


def test_read_padded_fills_outside_with_white_and_reads_only_inside() -> None:
    level = Level(0, 10, 8, 1.0)
    calls: list[tuple[int, int, int, int]] = []

    def reader(x: int, y: int, w: int, h: int) -> np.ndarray:
        calls.append((x, y, w, h))
        return np.zeros((h, w, 3), dtype=np.uint8)

    out = read_padded(LevelWindow(-2, 6, 5, 4), level, reader)
    assert calls == [(0, 6, 3, 2)]
    assert out.shape == (4, 5, 3)
    assert (out[:2, 2:] == 0).all()
    assert (out[:, :2] == 255).all()
    assert (out[2:] == 255).all()


# --- DICOM -----------------------------------------------------------------------------------


def test_dicom_context_is_filled_from_the_dataset(synthetic_slides: SyntheticSlideFiles) -> None:
    slide = open_slide(str(synthetic_slides.dicom_dir))
    try:
        info = slide.info
        ctx = info.dicom
        assert ctx is not None
        assert info.format == "dicom-wsi"
        assert info.identity == f"dicom:series:{ctx.series_instance_uid}"
        assert ctx.study_instance_uid.startswith("2.25.")
        assert ctx.frame_of_reference_uid
        assert len(ctx.sop_instance_uids) == len(info.levels) == 3
        assert ctx.patient_id == "SYN-0001"
        assert ctx.patient_name == "Synthetic^Marrow"
        assert ctx.patient_birth_date == "19700101"
        assert ctx.accession_number == "SYNACC0001"
        assert ctx.study_id == "SYN-STUDY"
        assert ctx.referring_physician_name == "Referring^Synthetic"
        assert ctx.container_identifier == "SYN-SLIDE-1"
        assert ctx.specimen_identifier == "SYN-SPECIMEN-1"
        assert ctx.specimen_uid.startswith("2.25.")
        assert ctx.specimen_description
        assert ctx.manufacturer == "marrowscope synthetic"
        assert len(ctx.image_orientation) == 6
        assert len(ctx.image_origin_mm) == 2
    finally:
        slide.close()


def test_one_dicom_instance_opens_the_whole_pyramid(
    synthetic_slides: SyntheticSlideFiles,
) -> None:
    first = sorted(synthetic_slides.dicom_dir.glob("*.dcm"))[0]
    slide = open_slide(str(first))
    try:
        assert [lv.downsample for lv in slide.info.levels] == [1.0, 4.0, 16.0]
    finally:
        slide.close()


def _make_sparse_copy(src: Path, dst: Path, drop_frame: int) -> None:
    """TILED_FULL → TILED_SPARSE with explicit frame positions; drops one level-0 frame."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.sequence import Sequence

    dst.mkdir()
    for path in src.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        n = int(ds.NumberOfFrames)
        tiles_x = -(-int(ds.TotalPixelMatrixColumns) // int(ds.Columns))
        frames = list(generate_frames(ds.PixelData, number_of_frames=n))
        keep = [i for i in range(n) if not (n > 4 and i == drop_frame)]
        per_frame = Sequence()
        for i in keep:
            pos = Dataset()
            pos.ColumnPositionInTotalImagePixelMatrix = (i % tiles_x) * int(ds.Columns) + 1
            pos.RowPositionInTotalImagePixelMatrix = (i // tiles_x) * int(ds.Rows) + 1
            pos.XOffsetInSlideCoordinateSystem = 0
            pos.YOffsetInSlideCoordinateSystem = 0
            pos.ZOffsetInSlideCoordinateSystem = 0
            item = Dataset()
            item.PlanePositionSlideSequence = Sequence([pos])
            per_frame.append(item)
        ds.PerFrameFunctionalGroupsSequence = per_frame
        ds.DimensionOrganizationType = "TILED_SPARSE"
        ds.NumberOfFrames = len(keep)
        ds.PixelData = encapsulate([frames[i] for i in keep])
        ds.save_as(dst / path.name, enforce_file_format=True)


def test_tiled_sparse_reads_like_tiled_full_and_missing_tiles_are_white(
    synthetic_slides: SyntheticSlideFiles, tmp_path: Path
) -> None:
    sparse_dir = tmp_path / "sparse"
    _make_sparse_copy(synthetic_slides.dicom_dir, sparse_dir, drop_frame=1)
    sparse = open_slide(str(sparse_dir))
    full = open_slide(str(synthetic_slides.dicom_dir))
    try:
        assert sparse.info.properties["dicom.DimensionOrganizationType"] == "TILED_SPARSE"
        box = Box(0, 0, 768, 256)
        a, b = sparse.read_region(box, 0), full.read_region(box, 0)
        assert np.array_equal(a[:, :256], b[:, :256])
        assert np.array_equal(a[:, 512:], b[:, 512:])
        assert (a[:, 256:512] == 255).all()
        low = sparse.read_region(Box(0, 0, 2048, 1536), 1)
        assert np.array_equal(low, full.read_region(Box(0, 0, 2048, 1536), 1))
    finally:
        sparse.close()
        full.close()


def test_jpeg2000_dicom_reads_like_jpeg(
    synthetic_slides: SyntheticSlideFiles, tmp_path: Path
) -> None:
    from wsidicom.codec import Jpeg2kSettings
    from wsidicomizer import WsiDicomizer

    WsiDicomizer.convert(
        synthetic_slides.svs, tmp_path / "j2k", tile_size=256, encoding=Jpeg2kSettings(),
        force_transcoding=True, include_label=False, include_overview=False,
        include_thumbnail=False, workers=1,
    )
    j2k = open_slide(str(tmp_path / "j2k"))
    jpeg = open_slide(str(synthetic_slides.dicom_dir))
    try:
        # JPEG 2000 Image Compression (Lossless Only) or (lossy)
        assert j2k.info.properties["dicom.TransferSyntaxUID"] in {
            "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.4.91",
        }
        box = Box(100, 100, 500, 400)
        diff = np.abs(j2k.read_region(box, 0).astype(int) - jpeg.read_region(box, 0)).mean()
        assert diff < 2.0
    finally:
        j2k.close()
        jpeg.close()


# --- detection and listing -----------------------------------------------------------------


def test_format_is_detected_by_content_not_extension(
    synthetic_slides: SyntheticSlideFiles, tmp_path: Path
) -> None:
    png_named_svs = shutil.copy(synthetic_slides.png, tmp_path / "really-a-png.svs")
    svs_named_png = shutil.copy(synthetic_slides.svs, tmp_path / "really-an-svs.png")
    a = open_slide(str(png_named_svs), mpp_override=0.5)
    b = open_slide(str(svs_named_png))
    try:
        assert a.info.format == "png"
        assert b.info.format == "openslide:aperio"
        assert b.info.mpp == (0.5, 0.5)
    finally:
        a.close()
        b.close()


def test_list_slides_expands_folders(synthetic_slides: SyntheticSlideFiles, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a slide")
    nested = tmp_path / "case-1"
    shutil.copytree(synthetic_slides.dicom_dir, nested / "dicom")
    shutil.copy(synthetic_slides.svs, nested / "a.svs")
    shutil.copy(synthetic_slides.png, tmp_path / "b.png")
    found = list_slides([str(tmp_path), "dicomweb:http://127.0.0.1:1/studies/1"])
    assert found == [
        str(tmp_path / "b.png"),
        str(nested / "a.svs"),
        str(nested / "dicom"),
        "dicomweb:http://127.0.0.1:1/studies/1",
    ]


def test_png_pyramid_is_lazy_and_cheap(synthetic_slides: SyntheticSlideFiles) -> None:
    slide = open_slide(str(synthetic_slides.png), mpp_override=0.5)
    try:
        assert [lv.downsample for lv in slide.info.levels] == [1.0, 4.0]
        assert slide.info.mpp_source == "override"
        assert slide.info.identity.startswith("sha256:")
        assert slide.thumbnail(64).shape == (48, 64, 3)
    finally:
        slide.close()


@pytest.mark.parametrize(
    "box",
    [Box(0, 0, 2048, 1536), Box(255, 255, 2, 2), Box(1000, 900, 1500, 1000), Box(-64, 10, 300, 70)],
)
def test_direct_tiff_tiles_equal_openslide_pixels(
    synthetic_slides: SyntheticSlideFiles, box: Box
) -> None:
    from adapters.slides.openslide_slide import OpenSlideSlide

    direct = OpenSlideSlide(str(synthetic_slides.svs))
    plain = OpenSlideSlide(str(synthetic_slides.svs), direct_tiles=False)
    try:
        assert direct.info == plain.info
        for lv in direct.info.levels:
            a = direct.read_region(box, lv.index).astype(np.int16)
            b = plain.read_region(box, lv.index).astype(np.int16)
            assert a.shape == b.shape
            assert np.abs(a - b).mean() <= 1.0
    finally:
        direct.close()
        plain.close()


def test_subifd_pyramid_levels_are_used(
    synthetic_slides: SyntheticSlideFiles, tmp_path: Path
) -> None:
    """OpenSlide's generic-tiff reader sees only level 0 of a SubIFD (OME-style) pyramid."""
    import tifffile
    from PIL import Image

    full = np.asarray(Image.open(synthetic_slides.png).convert("RGB"))
    low = np.asarray(Image.fromarray(full).reduce(4))
    path = tmp_path / "subifd.tif"
    common: dict[str, Any] = {
        "tile": (256, 256), "photometric": "rgb", "compression": "zlib", "metadata": None
    }
    with tifffile.TiffWriter(path) as tif:
        tif.write(full, subifds=1, resolution=(2e4, 2e4), resolutionunit="CENTIMETER", **common)
        tif.write(low, subfiletype=1, **common)
    slide = open_slide(str(path))
    png = open_slide(str(synthetic_slides.png), mpp_override=0.5)
    try:
        assert slide.info.format == "openslide:generic-tiff"
        assert slide.info.mpp == pytest.approx((0.5, 0.5))
        assert [lv.downsample for lv in slide.info.levels] == [1.0, 4.0]
        for box in (Box(300, 200, 900, 700), Box(1900, 1400, 400, 400)):
            assert np.array_equal(slide.read_region(box, 1), png.read_region(box, 1))
            assert np.array_equal(slide.read_region(box, 0), png.read_region(box, 0))
    finally:
        slide.close()
        png.close()


def _gradient(box: Box, downsample: float) -> np.ndarray:
    h, w = -(-box.h_px0 // int(downsample)), -(-box.w_px0 // int(downsample))
    ys = box.y_px0 + (np.arange(h)[:, None] + 0.5) * downsample
    xs = box.x_px0 + (np.arange(w)[None, :] + 0.5) * downsample
    v = (ys / 4 + xs / 8) % 256
    return np.stack(np.broadcast_arrays(v, 255 - v, np.full_like(v, 128.0)), -1).astype(np.uint8)


def test_odd_sized_svs_has_whole_number_downsamples(tmp_path: Path) -> None:
    from PIL import Image

    from adapters.synthetic.writers import write_dicom_wsi, write_svs

    path = write_svs(tmp_path / "odd.svs", 1000, 777, 0.25, _gradient)
    slide = open_slide(str(path))
    try:
        assert [(lv.width, lv.height, lv.downsample) for lv in slide.info.levels] == [
            (1000, 777, 1.0), (250, 195, 4.0), (63, 49, 16.0)
        ]
        assert slide.info.mpp == (0.25, 0.25)
        low = slide.read_region(Box(0, 0, 1000, 777), 1)
        assert low.shape == (195, 250, 3)
        expected = np.asarray(Image.fromarray(_gradient(Box(0, 0, 1000, 777), 1.0)).reduce(4))
        assert np.abs(low.astype(int) - expected).mean() < 3.0
    finally:
        slide.close()
    with pytest.raises(ValueError, match="multiples"):
        write_dicom_wsi(tmp_path / "odd-dicom", 1000, 777, 0.25, _gradient)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_written_dicom_wsi_is_clean_under_dciodvfy(synthetic_slides: SyntheticSlideFiles) -> None:
    import subprocess

    for path in sorted(synthetic_slides.dicom_dir.glob("*.dcm")):
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        problems = [line for line in (run.stdout + run.stderr).splitlines()
                    if line.startswith("Error")]
        assert problems == [], f"{path.name}: {problems}"
