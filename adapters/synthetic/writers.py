"""Write a rendered slide as an Aperio-like SVS, a DICOM-WSI pyramid or a PNG.

Every writer takes a *render callback* ``render(box, downsample) -> RGB uint8`` that returns the
pixels of the level-0 box ``box`` at the given downsample, shape (ceil(h/ds), ceil(w/ds), 3).
Pyramids are generated tile by tile, so level 0 is never held in memory as a whole.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.domain.geometry import Box

RGBArray = npt.NDArray[np.uint8]
RenderFn = Callable[[Box, float], RGBArray]

_WHITE = 255
_THUMBNAIL_MAX_PX = 768


@dataclass(frozen=True)
class DicomSlideMetadata:
    """Optional patient/study identity written into a synthetic DICOM-WSI pyramid."""

    patient_name: str = "Synthetic^Marrow"
    patient_id: str = "SYN-0001"
    patient_birth_date: dt.date | None = None
    patient_sex: str = "O"
    study_id: str = "SYN-STUDY"
    accession_number: str = "SYNACC0001"
    study_date: dt.date | None = None
    study_time: dt.time | None = None
    referring_physician_name: str = "Referring^Synthetic"
    study_description: str = "Synthetic bone marrow trephine"
    container_identifier: str = "SYN-SLIDE-1"
    specimen_identifier: str = "SYN-SPECIMEN-1"
    specimen_description: str = "Synthetic bone marrow trephine, H&E"
    manufacturer: str = "marrowscope synthetic"


def _level_size(width_px0: int, height_px0: int, downsample: int) -> tuple[int, int]:
    return max(1, math.ceil(width_px0 / downsample)), max(1, math.ceil(height_px0 / downsample))


def render_level_tile(
    render: RenderFn,
    width_px0: int,
    height_px0: int,
    downsample: int,
    x_lvl: int,
    y_lvl: int,
    tile: int,
) -> RGBArray:
    """One ``tile`` x ``tile`` tile of a pyramid level, white-padded beyond the image edge."""
    out = np.full((tile, tile, 3), _WHITE, dtype=np.uint8)
    box = Box(x_lvl * downsample, y_lvl * downsample, tile * downsample, tile * downsample)
    inside = box.clipped(width_px0, height_px0)
    if inside is None:
        return out
    pixels = np.asarray(render(inside, float(downsample)), dtype=np.uint8)[..., :3]
    h = min(pixels.shape[0], tile)
    w = min(pixels.shape[1], tile)
    out[:h, :w] = pixels[:h, :w]
    return out


def _level_tiles(
    render: RenderFn, width_px0: int, height_px0: int, downsample: int, tile: int
) -> Iterator[RGBArray]:
    lw, lh = _level_size(width_px0, height_px0, downsample)
    for ty in range(math.ceil(lh / tile)):
        for tx in range(math.ceil(lw / tile)):
            yield render_level_tile(
                render, width_px0, height_px0, downsample, tx * tile, ty * tile, tile
            )


def _thumbnail(
    render: RenderFn, width_px0: int, height_px0: int, min_downsample: int
) -> RGBArray:
    """A small overview, no finer than the coarsest level (so it costs little to render)."""
    ds = max(min_downsample, math.ceil(max(width_px0, height_px0) / _THUMBNAIL_MAX_PX))
    return np.ascontiguousarray(
        np.asarray(render(Box(0, 0, width_px0, height_px0), float(ds)), dtype=np.uint8)[..., :3]
    )


def _check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    lv = tuple(int(d) for d in levels)
    if not lv or lv[0] != 1 or any(b <= a for a, b in zip(lv, lv[1:], strict=False)):
        raise ValueError(f"levels must start at 1 and increase, got {levels!r}")
    return lv


def write_svs(
    path: str | Path,
    width_px0: int,
    height_px0: int,
    mpp: float,
    render: RenderFn,
    tile: int = 256,
    levels: Sequence[int] = (1, 4, 16),
    quality: int = 90,
    app_mag: float = 20.0,
    bigtiff: bool | None = None,
) -> Path:
    """Write a pyramidal Aperio-like TIFF that OpenSlide reads as ``aperio`` with µm/px.

    Layout as Aperio's: IFD 0 = level 0 (tiled JPEG), IFD 1 = a small stripped thumbnail,
    IFD 2.. = lower levels (tiled JPEG). Levels are plain IFDs, not SubIFDs. BigTIFF is used
    above 2 Gpx unless ``bigtiff`` says otherwise.
    """
    import tifffile

    out = Path(path)
    ds_levels = _check_levels(levels)
    head = (
        f"Aperio Image Library v12.0.16 \r\n{width_px0}x{height_px0} [0,0 {width_px0}x{height_px0}]"
        f" ({tile}x{tile}) JPEG/RGB Q={quality}"
    )
    props = f"|AppMag = {app_mag:g}|MPP = {mpp:.6f}|Title = marrowscope synthetic"
    common: dict[str, Any] = {
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": quality},
        "subsampling": (2, 1),
        "metadata": None,
    }
    big = width_px0 * height_px0 > 2**31 if bigtiff is None else bigtiff
    with tifffile.TiffWriter(out, bigtiff=big) as tif:
        for i, ds in enumerate(ds_levels):
            lw, lh = _level_size(width_px0, height_px0, ds)
            desc = head + props if ds == 1 else f"{head} -> {lw}x{lh} - {props}"
            tif.write(
                _level_tiles(render, width_px0, height_px0, ds, tile),
                shape=(lh, lw, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                description=desc,
                **common,
            )
            if i == 0:
                thumb = _thumbnail(render, width_px0, height_px0, ds_levels[-1])
                tif.write(
                    thumb,
                    description=f"{head} -> {thumb.shape[1]}x{thumb.shape[0]} - {props}",
                    rowsperstrip=16,
                    **common,
                )
    return out


def write_png(path: str | Path, width_px0: int, height_px0: int, render: RenderFn) -> Path:
    """Write level 0 as one PNG (small slides only: the image is held in memory)."""
    from PIL import Image

    if width_px0 * height_px0 > 64_000_000:
        raise ValueError("write_png is for small slides (at most 64 Mpx)")
    rgb = np.asarray(render(Box(0, 0, width_px0, height_px0), 1.0), dtype=np.uint8)[..., :3]
    out = Path(path)
    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(out, format="PNG")
    return out


class _SeededUids:
    """Deterministic UIDs ``2.25.<uuid5(seed, n)>`` so the same seed gives the same files."""

    def __init__(self, seed: str) -> None:
        self._ns = uuid.uuid5(uuid.NAMESPACE_URL, f"marrowscope-synthetic:{seed}")
        self._n = 0

    def named(self, name: str) -> str:
        return f"2.25.{uuid.uuid5(self._ns, name).int}"

    def __call__(self) -> object:
        from pydicom.uid import UID

        self._n += 1
        return UID(self.named(f"generated-{self._n}"))


def _wsi_metadata(meta: DicomSlideMetadata, uids: _SeededUids) -> object:
    from pydicom.uid import UID
    from wsidicom.metadata import (
        Equipment,
        Patient,
        PatientSex,
        Series,
        Slide,
        SlideSample,
        Study,
        WsiMetadata,
    )
    from wsidicom.metadata.image import Image
    from wsidicom.metadata.label import Label
    from wsidicom.metadata.pyramid import Pyramid

    sex = {"M": PatientSex.M, "F": PatientSex.F}.get(meta.patient_sex.upper(), PatientSex.O)
    return WsiMetadata(
        study=Study(
            uid=UID(uids.named("study")),
            identifier=meta.study_id,
            date=meta.study_date or dt.date(2026, 1, 1),
            time=meta.study_time or dt.time(12, 0, 0),
            accession_number=meta.accession_number,
            referring_physician_name=meta.referring_physician_name,
            description=meta.study_description,
        ),
        series=Series(uid=UID(uids.named("series")), number=1),
        patient=Patient(
            name=meta.patient_name,
            identifier=meta.patient_id,
            birth_date=meta.patient_birth_date or dt.date(1970, 1, 1),
            sex=sex,
        ),
        equipment=Equipment(
            manufacturer=meta.manufacturer,
            model_name="synthetic",
            device_serial_number="0",
            software_versions=["marrowscope"],
        ),
        slide=Slide(
            identifier=meta.container_identifier,
            samples=[
                SlideSample(
                    identifier=meta.specimen_identifier,
                    uid=UID(uids.named("specimen")),
                    short_description=meta.specimen_description[:64],
                )
            ],
        ),
        pyramid=Pyramid(image=Image(), optical_paths=[]),
        label=Label(),
        frame_of_reference_uid=UID(uids.named("frame-of-reference")),
    )


def write_dicom_wsi(
    folder: str | Path,
    width_px0: int,
    height_px0: int,
    mpp: float,
    render: RenderFn,
    levels: Sequence[int] = (1, 4, 16),
    tile: int = 256,
    quality: int = 90,
    metadata: DicomSlideMetadata | None = None,
    seed: str = "0",
) -> list[Path]:
    """Write a VL Whole Slide Microscopy pyramid (TILED_FULL, JPEG baseline) into ``folder``.

    The pyramid is first written as an Aperio-like TIFF in a temporary folder, then its JPEG
    tiles are moved into DICOM without re-encoding (``svs_to_dicom_wsi``).
    """
    with tempfile.TemporaryDirectory(prefix="marrowscope-svs-") as tmp:
        svs = write_svs(
            Path(tmp) / "slide.svs", width_px0, height_px0, mpp, render,
            tile=tile, levels=levels, quality=quality,
        )
        return svs_to_dicom_wsi(svs, folder, tile=tile, metadata=metadata, seed=seed)


def svs_to_dicom_wsi(
    svs: str | Path,
    folder: str | Path,
    tile: int = 256,
    metadata: DicomSlideMetadata | None = None,
    seed: str = "0",
) -> list[Path]:
    """Convert an SVS written by ``write_svs`` into a DICOM-WSI folder with wsidicomizer.

    JPEG tiles are copied, not re-encoded, so both files hold identical pixels. All UIDs
    (study, series, instances, frame of reference, specimen) derive from ``seed``.
    """
    from wsidicomizer import WsiDicomizer

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    uids = _SeededUids(seed)
    written = WsiDicomizer.convert(
        Path(svs),
        out,
        metadata=_wsi_metadata(metadata or DicomSlideMetadata(), uids),
        tile_size=tile,
        uid_generator=uids,
        include_label=False,
        include_overview=False,
        include_thumbnail=False,
        workers=1,
    )
    return [Path(p) for p in written]
