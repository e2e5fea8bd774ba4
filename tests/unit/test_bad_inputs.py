"""Bad slide inputs give the right domain error with a message that names the problem."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import SyntheticSlideFiles

from adapters.slides.registry import open_slide
from service.domain.errors import (
    InvalidInput,
    MarrowscopeError,
    MissingResolution,
    SlideNotFound,
    SlideTooLarge,
    SlideUnreadable,
    UnsupportedFormat,
)
from service.domain.geometry import Box


def _read_everything(reference: str, mpp: float | None = None) -> None:
    slide = open_slide(reference, mpp_override=mpp)
    try:
        for lv in slide.info.levels:
            slide.read_region(Box(0, 0, slide.info.width_px0, slide.info.height_px0), lv.index)
    finally:
        slide.close()


def _truncated_copy(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SlideNotFound, match="no such file"):
        open_slide(str(tmp_path / "nope.svs"))


def test_random_bytes_named_svs(tmp_path: Path) -> None:
    path = tmp_path / "random.svs"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UnsupportedFormat, match="unrecognised content"):
        open_slide(str(path))


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormat, match="no slide files"):
        open_slide(str(tmp_path))


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.98])
def test_truncated_svs(
    synthetic_slides: SyntheticSlideFiles, tmp_path: Path, fraction: float
) -> None:
    path = _truncated_copy(synthetic_slides.svs, tmp_path / "cut.svs", fraction)
    with pytest.raises(SlideUnreadable, match="truncated"):
        _read_everything(str(path))


def test_truncated_png_fails_at_read_time_with_a_domain_error(
    synthetic_slides: SyntheticSlideFiles, tmp_path: Path
) -> None:
    path = _truncated_copy(synthetic_slides.png, tmp_path / "cut.png", 0.5)
    with pytest.raises(SlideUnreadable, match="cannot decode"):
        _read_everything(str(path), mpp=0.5)


def test_truncated_dicom_frame_data(synthetic_slides: SyntheticSlideFiles, tmp_path: Path) -> None:
    folder = tmp_path / "cut-dicom"
    folder.mkdir()
    for src in synthetic_slides.dicom_dir.glob("*.dcm"):
        dst = folder / src.name
        dst.write_bytes(src.read_bytes())
    largest = max(folder.glob("*.dcm"), key=lambda p: p.stat().st_size)
    _truncated_copy(largest, largest, 0.6)
    with pytest.raises(SlideUnreadable):
        _read_everything(str(folder))


def test_png_without_mpp(synthetic_slides: SyntheticSlideFiles) -> None:
    with pytest.raises(MissingResolution, match="needs --mpp"):
        open_slide(str(synthetic_slides.png))


def test_implausible_mpp(synthetic_slides: SyntheticSlideFiles) -> None:
    with pytest.raises(InvalidInput, match="--mpp"):
        open_slide(str(synthetic_slides.png), mpp_override=-0.5)


def _write_ct(path: Path) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientName = "Test^CT"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.zeros((8, 8), dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_file_that_is_not_a_wsi(tmp_path: Path) -> None:
    path = _write_ct(tmp_path / "ct.dcm")
    with pytest.raises(UnsupportedFormat, match=r"CT Image Storage.*CT.*not a whole-slide"):
        open_slide(str(path))


def test_dicom_folder_without_a_wsi(tmp_path: Path) -> None:
    _write_ct(tmp_path / "ct.dcm")
    with pytest.raises(UnsupportedFormat, match="not a whole-slide"):
        open_slide(str(tmp_path))


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_png_declaring_absurd_size_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_declaring(100_000, 100_000))
    with pytest.raises(SlideTooLarge, match="10.00 Gpx"):
        open_slide(str(path), mpp_override=0.5)


@pytest.mark.parametrize("tiled", [True, False])
def test_tiff_declaring_absurd_width(tmp_path: Path, tiled: bool) -> None:
    import tifffile

    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, np.zeros((256, 256, 3), np.uint8), photometric="rgb",
                     tile=(256, 256) if tiled else None, metadata=None)
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags["ImageWidth"]
        offset, fmt = tag.valueoffset, "<I" if tag.dtype == 4 else "<H"
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, 0xFFFFFFF0 if fmt == "<I" else 0xFFFF)
    path.write_bytes(bytes(data))
    with pytest.raises((SlideTooLarge, SlideUnreadable)) as err:
        open_slide(str(path), mpp_override=0.5)
    if fmt == "<I":
        assert err.type is SlideTooLarge
        assert "exceeds the limit" in str(err.value)


def test_dicom_declaring_absurd_size(synthetic_slides: SyntheticSlideFiles, tmp_path: Path) -> None:
    import pydicom

    folder = tmp_path / "huge-dicom"
    folder.mkdir()
    for src in synthetic_slides.dicom_dir.glob("*.dcm"):
        ds = pydicom.dcmread(src)
        if int(ds.TotalPixelMatrixColumns) == synthetic_slides.width_px0:
            ds.TotalPixelMatrixColumns = 2**32 - 1
        ds.save_as(folder / src.name)
    with pytest.raises(SlideTooLarge, match="exceeds the limit"):
        open_slide(str(folder))


def test_every_error_is_a_one_line_domain_error(tmp_path: Path) -> None:
    path = tmp_path / "x.svs"
    path.write_bytes(b"II*\x00" + os.urandom(64))
    with pytest.raises(MarrowscopeError) as err:
        open_slide(str(path))
    assert "\n" not in str(err.value)
    assert str(path) in str(err.value)
