"""What the pipeline knows about a slide, independent of the file format."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Level:
    """One pyramid level: its size and its downsample relative to level 0."""

    index: int
    width: int
    height: int
    downsample: float


@dataclass(frozen=True)
class DicomContext:
    """Identity of a DICOM slide, needed to write SR/ANN/SEG into the same study.

    Filled by DICOM adapters from the slide, or for non-DICOM inputs from user-given metadata.
    """

    study_instance_uid: str
    series_instance_uid: str | None = None
    sop_instance_uids: tuple[str, ...] = ()
    frame_of_reference_uid: str | None = None
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_id: str = ""
    accession_number: str = ""
    study_date: str = ""
    study_time: str = ""
    referring_physician_name: str = ""
    container_identifier: str = ""
    specimen_identifier: str = ""
    specimen_uid: str = ""
    specimen_description: str = ""
    image_origin_mm: tuple[float, float] = (0.0, 0.0)
    image_orientation: tuple[float, float, float, float, float, float] = (
        0.0,
        -1.0,
        0.0,
        -1.0,
        0.0,
        0.0,
    )
    manufacturer: str = ""


@dataclass(frozen=True)
class SlideInfo:
    """Format-independent description of an opened slide.

    ``mpp`` is µm per level-0 pixel (x, y). ``mpp_source`` says where it came from
    (``file``, ``override`` or ``file+override`` when both exist and disagree).
    """

    path: str
    format: str
    width_px0: int
    height_px0: int
    mpp: tuple[float, float]
    levels: tuple[Level, ...]
    identity: str
    mpp_source: str = "file"
    mpp_file: tuple[float, float] | None = None
    vendor: str = ""
    dicom: DicomContext | None = None
    properties: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def stem(self) -> str:
        """A filesystem-safe name for the slide's output folder."""
        import os

        base = os.path.basename(os.path.normpath(self.path)) or "slide"
        for suffix in (".ome.tiff", ".ome.tif", ".svs", ".tiff", ".tif", ".ndpi", ".mrxs",
                       ".png", ".jpg", ".jpeg", ".dcm", ".scn", ".bif", ".vms"):
            if base.lower().endswith(suffix):
                base = base[: -len(suffix)]
                break
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in base) or "slide"

    def level_mpp(self, level: Level) -> float:
        """Mean µm/px at the given level."""
        return (self.mpp[0] + self.mpp[1]) / 2.0 * level.downsample
