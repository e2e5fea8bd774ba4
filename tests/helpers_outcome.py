"""A fake ``AnalysisOutcome`` with a known class map, for writer tests."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from service.domain.cellularity import PixelCounts, compute_metrics
from service.domain.labels import TissueClass
from service.domain.results import AnalysisResult, Provenance
from service.domain.slide import DicomContext, Level, SlideInfo
from service.ports.outputs import AnalysisOutcome

MPP_SLIDE = 0.5
PX0_PER_PX = 4.0


@dataclass(frozen=True)
class ArrayRaster:
    """A ``LabelRaster`` over an in-memory array; counts how many rows were read."""

    array: npt.NDArray[np.uint8]

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    def read_rows(self, y0: int, y1: int) -> npt.NDArray[np.uint8]:
        return self.array[y0:y1]


def known_class_map(height: int = 300, width: int = 400) -> npt.NDArray[np.uint8]:
    """A marrow blob with hematopoietic tissue, round adipocytes (one per band seam) and a speck."""
    yy, xx = np.mgrid[0:height, 0:width]
    cmap = np.zeros((height, width), np.uint8)
    marrow = ((yy - height / 2) / (height * 0.42)) ** 2 + ((xx - width / 2) / (width * 0.42)) ** 2
    cmap[marrow <= 1] = TissueClass.HEMATOPOIETIC
    for cy, cx, r in [(150, 200, 20), (100, 120, 14), (64, 260, 12), (200, 150, 16),
                      (128, 300, 10), (210, 260, 9)]:
        cmap[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = TissueClass.ADIPOSE
    cmap[150, 90] = TissueClass.ADIPOSE  # a speck, below the minimum vacuole area
    return cmap


def dicom_context() -> DicomContext:
    return DicomContext(
        study_instance_uid="1.2.826.0.1.3680043.8.498.1",
        series_instance_uid="1.2.826.0.1.3680043.8.498.2",
        sop_instance_uids=("1.2.826.0.1.3680043.8.498.3",),
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.4",
        patient_id="PAT-1",
        patient_name="Test^Marrow",
        patient_birth_date="19700101",
        patient_sex="O",
        study_id="S1",
        accession_number="ACC1",
        study_date="20260101",
        study_time="101010",
        container_identifier="SLIDE-1",
        specimen_identifier="SPEC-1",
        specimen_uid="1.2.826.0.1.3680043.8.498.5",
        specimen_description="Bone marrow aspirate smear",
        image_origin_mm=(20.0, 40.0),
        manufacturer="Synthetic",
    )


def fake_outcome(
    cmap: npt.NDArray[np.uint8] | None = None,
    dicom: DicomContext | None = None,
    job_key: str = "job-key-1",
    with_dicom: bool = True,
) -> AnalysisOutcome:
    """An outcome whose numbers are computed from ``cmap`` by pixel counts."""
    cmap = known_class_map() if cmap is None else cmap
    h, w = cmap.shape
    marrow = int(np.count_nonzero(cmap))
    fat = int(np.count_nonzero(cmap == TissueClass.ADIPOSE))
    mpp = MPP_SLIDE * PX0_PER_PX
    metrics = compute_metrics(PixelCounts(marrow, fat, h * w), mpp)
    w0, h0 = int(w * PX0_PER_PX), int(h * PX0_PER_PX)
    slide = SlideInfo(
        path="/data/slide-1.dcm",
        format="dicom",
        width_px0=w0,
        height_px0=h0,
        mpp=(MPP_SLIDE, MPP_SLIDE),
        levels=(Level(0, w0, h0, 1.0),),
        identity="series:1.2.826.0.1.3680043.8.498.2",
        dicom=(dicom or dicom_context()) if with_dicom else None,
    )
    result = AnalysisResult.from_metrics(
        metrics,
        slide=slide.path,
        tiles_total=4,
        tiles_analyzed=4,
        mpp_analyzed=mpp,
        mpp_slide=(MPP_SLIDE, MPP_SLIDE),
        analysis_size=(w, h),
        segmenter="classical",
        fat_method="robust",
        fat_threshold=212.0,
        glass_level=236.0,
        qc_flags=(),
        warnings=(),
        provenance=Provenance(
            software_version="0.1.0",
            library_versions={"highdicom": "0.28.2"},
            parameters={"segmenter": "classical", "fat_method": "robust", "tile_size": 1280},
            input_path=slide.path,
            input_format="dicom",
            input_identity=slide.identity,
            segmenter_sha256="ab" * 32,
        ),
        elapsed_s=1.5,
    )
    return AnalysisOutcome(
        result=result,
        slide=slide,
        class_map=ArrayRaster(cmap),
        px0_per_px=(PX0_PER_PX, PX0_PER_PX),
        thumbnail=np.full((30, 40, 3), 230, np.uint8),
        job_key=job_key,
    )


def without_dicom(outcome: AnalysisOutcome) -> AnalysisOutcome:
    return replace(outcome, slide=replace(outcome.slide, dicom=None))
