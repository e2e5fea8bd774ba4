"""DICOM VL Whole Slide Microscopy images (a file or a folder of instances) via wsidicom.

wsidicom addresses a level by ``log2(scale)`` and its region locations are relative to that
level; we keep our own level indices (0 = finest) and convert level-0 boxes to level pixels
with ``adapters.slides.regions`` before calling it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapters.slides.checks import check_declared_size
from adapters.slides.dicom_context import (
    VL_WSI_SOP_CLASS_UID,
    dicom_context_from_dataset,
    is_dicom_file,
    sop_class_name,
)
from adapters.slides.mpp import resolve_mpp
from adapters.slides.regions import (
    LevelReadMixin,
    LevelWindow,
    RGBArray,
    read_padded,
)
from service.domain.errors import (
    InvalidInput,
    MarrowscopeError,
    SlideUnreadable,
    UnsupportedFormat,
)
from service.domain.slide import Level, SlideInfo

# Tiles of one region are decoded in parallel (wsidicom's thread pool).
DECODE_THREADS = min(4, os.cpu_count() or 1)

_HEADER_TAGS = [
    "SOPClassUID",
    "Modality",
    "SeriesInstanceUID",
    "TotalPixelMatrixColumns",
    "TotalPixelMatrixRows",
]


@dataclass(frozen=True)
class DicomHeader:
    """The few header fields used to find and check the instances of one slide."""

    path: str
    sop_class_uid: str
    modality: str
    series_uid: str
    columns: int
    rows: int

    @property
    def is_wsi(self) -> bool:
        return self.sop_class_uid == VL_WSI_SOP_CLASS_UID


def read_header(path: str) -> DicomHeader:
    """Reads the identifying header of one DICOM file (no pixel data)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except Exception as exc:  # pydicom raises many types for broken files
        raise SlideUnreadable(f"{path}: unreadable DICOM header ({exc})") from exc
    return DicomHeader(
        path=path,
        sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        columns=int(ds.get("TotalPixelMatrixColumns", 0) or 0),
        rows=int(ds.get("TotalPixelMatrixRows", 0) or 0),
    )


def dicom_files_in(folder: str) -> list[str]:
    """The DICOM Part 10 files directly inside ``folder``, sorted."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    paths = (os.path.join(folder, n) for n in names)
    return [p for p in paths if os.path.isfile(p) and is_dicom_file(p)]


def wsi_series_in(folder: str) -> dict[str, list[DicomHeader]]:
    """VL WSI instances directly inside ``folder``, grouped by series UID."""
    groups: dict[str, list[DicomHeader]] = {}
    for path in dicom_files_in(folder):
        try:
            header = read_header(path)
        except SlideUnreadable:
            continue
        if header.is_wsi:
            groups.setdefault(header.series_uid, []).append(header)
    return groups


def _not_wsi_error(header: DicomHeader) -> UnsupportedFormat:
    return UnsupportedFormat(
        f"{header.path}: DICOM {sop_class_name(header.sop_class_uid)}"
        f" (modality {header.modality or 'unknown'}) is not a whole-slide image;"
        " expected VL Whole Slide Microscopy Image Storage"
    )


def select_instances(reference: str) -> list[DicomHeader]:
    """The VL WSI instances of the slide ``reference`` (one file or a folder) points at.

    A file brings along the other instances of its series in the same folder.
    """
    if os.path.isdir(reference):
        files = dicom_files_in(reference)
        if not files:
            raise UnsupportedFormat(f"{reference}: folder holds no DICOM files")
        groups = wsi_series_in(reference)
        if not groups:
            raise _not_wsi_error(read_header(files[0]))
        if len(groups) > 1:
            raise InvalidInput(
                f"{reference}: folder holds {len(groups)} whole-slide series; "
                "pass one of its files to choose the slide"
            )
        return next(iter(groups.values()))
    header = read_header(reference)
    if not header.is_wsi:
        raise _not_wsi_error(header)
    siblings = wsi_series_in(os.path.dirname(os.path.abspath(reference)))
    return siblings.get(header.series_uid) or [header]


class DicomSlide(LevelReadMixin):
    """A ``SlideSource`` over a wsidicom ``WsiDicom`` (the selected pyramid)."""

    def __init__(self, reference: str, mpp_override: float | None = None) -> None:
        headers = select_instances(reference)
        width = max(h.columns for h in headers)
        height = max(h.rows for h in headers)
        check_declared_size(reference, width, height)
        from wsidicom import WsiDicom

        try:
            wsi = WsiDicom.open([h.path for h in headers])
        except MarrowscopeError:
            raise
        except Exception as exc:  # wsidicom raises many types for broken files
            raise SlideUnreadable(f"{reference}: cannot open DICOM-WSI ({exc})") from exc
        self._adopt(wsi, reference, reference, mpp_override)

    def _adopt(self, wsi: Any, reference: str, label: str, mpp_override: float | None) -> None:
        """Takes over an opened WsiDicom (file or web): levels, SlideInfo and a probe read;
        closes it and raises a domain error if the pyramid is unusable."""
        self._wsi = wsi
        try:
            self._levels_wsi: list[Any] = list(wsi.pyramid)
            base = self._levels_wsi[0]
            check_declared_size(label, int(base.size.width), int(base.size.height))
            self._info = self._describe(reference, mpp_override)
            self._probe()
        except MarrowscopeError:
            wsi.close()
            raise
        except Exception as exc:
            wsi.close()
            raise SlideUnreadable(f"{label}: invalid DICOM-WSI pyramid ({exc})") from exc

    def _describe(self, reference: str, mpp_override: float | None) -> SlideInfo:
        base = self._levels_wsi[0]
        base_mpp = (float(base.mpp.width), float(base.mpp.height))
        levels = []
        for i, lvl in enumerate(self._levels_wsi):
            ds = (float(lvl.mpp.width) / base_mpp[0] + float(lvl.mpp.height) / base_mpp[1]) / 2
            levels.append(Level(i, int(lvl.size.width), int(lvl.size.height), round(ds, 6)))
        check_declared_size(reference, levels[0].width, levels[0].height)
        mpp = resolve_mpp(base_mpp, mpp_override, reference)
        ds0 = base.datasets[0]
        sop_uids = tuple(
            str(d.SOPInstanceUID) for lvl in self._levels_wsi for d in lvl.datasets
        )
        context = dicom_context_from_dataset(ds0, sop_uids)
        return SlideInfo(
            path=reference,
            format="dicom-wsi",
            width_px0=levels[0].width,
            height_px0=levels[0].height,
            mpp=mpp.mpp,
            levels=tuple(levels),
            identity=f"dicom:series:{context.series_instance_uid}",
            mpp_source=mpp.source,
            mpp_file=mpp.mpp_file,
            vendor=context.manufacturer,
            dicom=context,
            properties={
                "dicom.DimensionOrganizationType": str(ds0.get("DimensionOrganizationType", "")),
                "dicom.TransferSyntaxUID": str(base.default_instance.image_data.transfer_syntax),
            },
        )

    def _probe(self) -> None:
        """Decodes one pixel of the last tile of level 0, so truncation shows at open."""
        lv = self._info.levels[0]
        self._read_level(lv, LevelWindow(lv.width - 1, lv.height - 1, 1, 1))

    @property
    def info(self) -> SlideInfo:
        return self._info

    def _read_level(self, lv: Level, win: LevelWindow) -> RGBArray:
        from wsidicom.geometry import Point, Region, Size

        wsi_level = self._levels_wsi[lv.index]

        def reader(x: int, y: int, w: int, h: int) -> RGBArray:
            try:
                img = wsi_level.get_region(
                    Region(Point(x, y), Size(w, h)), threads=DECODE_THREADS
                )
                return np.asarray(img.convert("RGB"), dtype=np.uint8)
            except Exception as exc:  # decoder and file errors of any kind
                raise SlideUnreadable(
                    f"{self._info.path}: cannot decode level {lv.index} at ({x}, {y}) ({exc})"
                ) from exc

        return read_padded(win, lv, reader)

    def close(self) -> None:
        self._wsi.close()
