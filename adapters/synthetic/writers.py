"""Write a rendered slide as an Aperio-like SVS, a DICOM-WSI pyramid or a PNG.

Every writer takes a *render callback* ``render(box, downsample) -> RGB uint8`` that returns the
pixels of the level-0 box ``box`` at the given downsample, shape (ceil(h/ds), ceil(w/ds), 3).
Pyramids are generated tile by tile, so level 0 is never held in memory as a whole.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import tempfile
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
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
    """One ``tile`` x ``tile`` tile of a pyramid level (see ``_pad_tile`` for the edges)."""
    box = Box(x_lvl * downsample, y_lvl * downsample, tile * downsample, tile * downsample)
    inside = box.clipped(width_px0, height_px0)
    if inside is None:
        return np.full((tile, tile, 3), _WHITE, dtype=np.uint8)
    pixels = np.asarray(render(inside, float(downsample)), dtype=np.uint8)[..., :3]
    return _pad_tile(pixels[:tile, :tile], tile)


def _pad_tile(pixels: RGBArray, tile: int) -> RGBArray:
    """Pads an edge tile to full size by repeating its last row/column: readers never show
    the padding, and unlike a white border it causes no JPEG ringing inside the image."""
    h, w = pixels.shape[:2]
    if (h, w) == (tile, tile):
        return np.ascontiguousarray(pixels)
    return np.pad(pixels, ((0, tile - h), (0, tile - w), (0, 0)), mode="edge")


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


class _LowerLevelSpool:
    """Builds the lower pyramid levels from level-0 strips while level 0 is being written.

    Each finished row of level-0 tiles is area-averaged (Pillow ``reduce``) into a disk-backed
    array for the first lower level; further levels are reduced from the previous one. Memory
    holds one strip of level 0, never the whole level.
    """

    def __init__(
        self, folder: Path, width_px0: int, height_px0: int, levels: tuple[int, ...], tile: int
    ) -> None:
        self.width_px0, self.height_px0, self.levels, self.tile = (
            width_px0, height_px0, levels, tile
        )
        self.arrays: dict[int, npt.NDArray[np.uint8]] = {}
        for ds in levels[1:]:
            lw, lh = _level_size(width_px0, height_px0, ds)
            self.arrays[ds] = np.lib.format.open_memmap(
                folder / f"level-{ds}.npy", mode="w+", dtype=np.uint8, shape=(lh, lw, 3)
            )

    @staticmethod
    def usable(levels: tuple[int, ...], tile: int) -> bool:
        ratios_ok = all(b % a == 0 for a, b in zip(levels, levels[1:], strict=False))
        return len(levels) > 1 and tile % levels[1] == 0 and ratios_ok

    def level0_tiles(self, render: RenderFn, workers: int = 1) -> Iterator[RGBArray]:
        """Level-0 tiles in TIFF order; each row is reduced into the next level before its
        tiles are handed out (the writer may stop pulling right after the last tile).
        ``workers`` > 1 renders the tiles of a row in that many processes (``render`` must
        then be picklable, e.g. a ``SyntheticScene`` method)."""
        cols = math.ceil(self.width_px0 / self.tile)
        with contextlib.ExitStack() as stack:
            pool = (
                stack.enter_context(ProcessPoolExecutor(workers)) if workers > 1 else None
            )
            yield from self._level0_rows(render, pool, cols)

    def _level0_rows(
        self, render: RenderFn, pool: ProcessPoolExecutor | None, cols: int
    ) -> Iterator[RGBArray]:
        tile, w0, h0 = self.tile, self.width_px0, self.height_px0
        ds1 = self.levels[1]
        for ty in range(math.ceil(h0 / tile)):
            jobs = [(render, w0, h0, 1, tx * tile, ty * tile, tile) for tx in range(cols)]
            if pool is None:
                row = [render_level_tile(*job) for job in jobs]
            else:
                row = list(pool.map(_render_job, jobs))
            rows = min(tile, h0 - ty * tile)
            strip = np.concatenate(row, axis=1)[:rows, :w0]
            reduced = _reduce(strip, ds1)
            y1 = ty * tile // ds1
            self.arrays[ds1][y1 : y1 + reduced.shape[0]] = reduced
            del strip, reduced
            yield from row

    def finish(self) -> None:
        """Reduces every further level from the previous one, in bands of rows."""
        for finer, coarser in zip(self.levels[1:], self.levels[2:], strict=False):
            ratio = coarser // finer
            src, dst = self.arrays[finer], self.arrays[coarser]
            band = ratio * 256
            for y in range(0, src.shape[0], band):
                reduced = _reduce(np.asarray(src[y : y + band]), ratio)
                dst[y // ratio : y // ratio + reduced.shape[0]] = reduced

    def tiles(self, ds: int) -> Iterator[RGBArray]:
        """Tiles of a lower level in TIFF order, edge-padded (``_pad_tile``)."""
        array, tile = self.arrays[ds], self.tile
        lh, lw = array.shape[:2]
        for ty in range(math.ceil(lh / tile)):
            for tx in range(math.ceil(lw / tile)):
                part = array[ty * tile : (ty + 1) * tile, tx * tile : (tx + 1) * tile]
                yield _pad_tile(np.asarray(part), tile)

    def thumbnail(self) -> RGBArray:
        from PIL import Image

        img = Image.fromarray(np.ascontiguousarray(self.arrays[self.levels[-1]]))
        img.thumbnail((_THUMBNAIL_MAX_PX, _THUMBNAIL_MAX_PX), Image.Resampling.BOX)
        return np.asarray(img, dtype=np.uint8)


def _render_job(job: tuple[RenderFn, int, int, int, int, int, int]) -> RGBArray:
    return render_level_tile(*job)


def _reduce(pixels: RGBArray, factor: int) -> RGBArray:
    """Area average by an integer factor (partial blocks at the edges averaged as they are)."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).reduce(factor))


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
    render_workers: int = 1,
) -> Path:
    """Write a pyramidal Aperio-like TIFF that OpenSlide reads as ``aperio`` with µm/px.

    Layout as Aperio's: IFD 0 = level 0 (tiled JPEG), IFD 1 = a small stripped thumbnail,
    IFD 2.. = lower levels (tiled JPEG). Levels are plain IFDs, not SubIFDs. BigTIFF is used
    above 2 Gpx unless ``bigtiff`` says otherwise.

    Level 0 is rendered tile by tile; lower levels are area averages of level 0 built on the
    way (disk-backed, see ``_LowerLevelSpool``) when ``tile`` is a multiple of the first
    downsample and downsamples divide each other; otherwise each level is rendered.
    ``render_workers`` > 1 renders level-0 tiles in that many processes.
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
    with (
        tempfile.TemporaryDirectory(prefix="marrowscope-pyramid-", dir=out.parent) as tmp,
        tifffile.TiffWriter(out, bigtiff=big) as tif,
    ):
        spool = (
            _LowerLevelSpool(Path(tmp), width_px0, height_px0, ds_levels, tile)
            if _LowerLevelSpool.usable(ds_levels, tile)
            else None
        )
        for i, ds in enumerate(ds_levels):
            lw, lh = _level_size(width_px0, height_px0, ds)
            desc = head + props if ds == 1 else f"{head} -> {lw}x{lh} - {props}"
            if spool is None:
                tiles = _level_tiles(render, width_px0, height_px0, ds, tile)
            else:
                tiles = (
                    spool.level0_tiles(render, render_workers) if ds == 1 else spool.tiles(ds)
                )
            tif.write(
                tiles,
                shape=(lh, lw, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                description=desc,
                **common,
            )
            if isinstance(tiles, Generator):
                tiles.close()  # ends a render process pool even if not pulled to the end
            if i == 0:
                if spool is not None:
                    spool.finish()
                    thumb = spool.thumbnail()
                else:
                    thumb = _thumbnail(render, width_px0, height_px0, ds_levels[-1])
                tif.write(
                    thumb,
                    description=f"{head} -> {thumb.shape[1]}x{thumb.shape[0]} - {props}",
                    rowsperstrip=16,
                    **common,
                )
        if spool is not None:
            spool.arrays.clear()
    return out


def write_png(
    path: str | Path, width_px0: int, height_px0: int, render: RenderFn, tile: int = 256
) -> Path:
    """Write level 0 as one PNG (small slides only: the image is held in memory).

    Rendered tile by tile on the same grid as ``write_svs``, so the PNG holds exactly the
    pixels the SVS/DICOM writers compress (and the render's temporaries stay small).
    """
    from PIL import Image

    if width_px0 * height_px0 > 64_000_000:
        raise ValueError("write_png is for small slides (at most 64 Mpx)")
    rgb = np.empty((height_px0, width_px0, 3), dtype=np.uint8)
    for y in range(0, height_px0, tile):
        for x in range(0, width_px0, tile):
            t = render_level_tile(render, width_px0, height_px0, 1, x, y, tile)
            h, w = min(tile, height_px0 - y), min(tile, width_px0 - x)
            rgb[y : y + h, x : x + w] = t[:h, :w]
    out = Path(path)
    Image.fromarray(rgb, mode="RGB").save(out, format="PNG")
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
    tiles are moved into DICOM without re-encoding (``svs_to_dicom_wsi``). The size must be a
    multiple of the largest downsample (the converter needs whole-number level scales).
    """
    coarsest = max(int(d) for d in levels)
    if width_px0 % coarsest or height_px0 % coarsest:
        raise ValueError(
            f"DICOM-WSI writer: {width_px0}x{height_px0} px must be multiples of the largest "
            f"downsample {coarsest}"
        )
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
