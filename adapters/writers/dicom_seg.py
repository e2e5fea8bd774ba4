"""Opt-in binary DICOM SEG (``seg.dcm``) of the class map at the analysis resolution.

Segment 1: hematopoietic tissue, segment 2: adipose tissue, tiled over the slide's frame of
reference with the analysis pixel spacing. The whole class map is held in memory, so maps above
``MAX_SEG_PIXELS`` are refused with an OutputError (use GeoJSON/ANN for those).
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from adapters.writers import dicom_common as dc
from adapters.writers.identity import job_uid
from service.domain.errors import OutputError
from service.ports.outputs import AnalysisOutcome

SEG_SERIES_NUMBER = 9003
MAX_SEG_PIXELS = 100_000_000
TILE_SIZE = 512
NOMINAL_THICKNESS_MM = 0.001  # unknown for a smear; nominal 1 µm (DICOM requires > 0)


class SegmentationWriter:
    """Writes ``seg.dcm``."""

    name = "seg"

    def write(self, outcome: AnalysisOutcome, out_dir: Path) -> list[Path]:
        path = out_dir / "seg.dcm"
        build_seg(outcome).save_as(path, enforce_file_format=True)
        return [path]


def build_seg(outcome: AnalysisOutcome) -> hd.seg.Segmentation:
    ctx = dc.require_dicom(outcome, "DICOM SEG")
    raster = outcome.class_map
    if raster.width * raster.height > MAX_SEG_PIXELS:
        raise OutputError(
            f"DICOM SEG skipped: class map {raster.width}x{raster.height} exceeds "
            f"{MAX_SEG_PIXELS} px; use the GeoJSON or ANN outputs"
        )
    source = _tiled_source(outcome)
    labels = raster.read_rows(0, raster.height)
    algorithm = dc.algorithm_sequence(outcome)
    segments = [
        hd.seg.SegmentDescription(
            segment_number=1,
            segment_label="Hematopoietic tissue",
            segmented_property_category=dc.TISSUE,
            segmented_property_type=dc.HEMATOPOIETIC_TISSUE,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        ),
        hd.seg.SegmentDescription(
            segment_number=2,
            segment_label="Adipose tissue",
            segmented_property_category=dc.TISSUE,
            segmented_property_type=codes.SCT.AdiposeTissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        ),
    ]
    sx, sy = outcome.px0_per_px
    origin = dc.px0_to_slide_mm(np.array([[sx / 2.0, sy / 2.0]]), outcome.slide, ctx)[0]
    spacing = (outcome.slide.mpp[1] * sy / 1000.0, outcome.slide.mpp[0] * sx / 1000.0)
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=labels[np.newaxis],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=job_uid(outcome.job_key, "seg/series"),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=job_uid(outcome.job_key, "seg/instance"),
        instance_number=1,
        manufacturer=dc.MANUFACTURER,
        manufacturer_model_name=dc.MODEL_NAME,
        software_versions=outcome.result.provenance.software_version,
        device_serial_number="0",
        pixel_measures=hd.PixelMeasuresSequence(
            pixel_spacing=spacing, slice_thickness=NOMINAL_THICKNESS_MM
        ),
        plane_orientation=hd.PlaneOrientationSequence(
            coordinate_system="SLIDE", image_orientation=ctx.image_orientation
        ),
        plane_positions=[hd.PlanePositionSequence(
            coordinate_system="SLIDE", image_position=tuple(origin), pixel_matrix_position=(1, 1)
        )],
        tile_pixel_array=True,
        tile_size=(TILE_SIZE, TILE_SIZE),
        omit_empty_frames=True,
        content_label="MARROW_SEG",
        series_description="marrowscope segmentation",
    )
    _fix_dimension_organization_uid(seg, job_uid(outcome.job_key, "seg/dimension-organization"))
    seg.PatientOrientation = ""  # type 2C: empty for slide coordinates
    seg.CodingSchemeIdentificationSequence = [dc.private_scheme_item()]
    dc.freeze_times(seg, *dc.frozen_date_time(ctx))
    return seg


def _fix_dimension_organization_uid(seg: Dataset, uid: str) -> None:
    """highdicom mints a random Dimension Organization UID; use the job's instead."""
    for item in [*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence]:
        item.DimensionOrganizationUID = uid


def _tiled_source(outcome: AnalysisOutcome) -> Dataset:
    """The source stand-in plus the tiled-image attributes highdicom reads for SEG."""
    ctx = dc.require_dicom(outcome, "DICOM SEG")
    ds = dc.source_image(outcome, "DICOM SEG")
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = ctx.image_origin_mm[0]
    origin.YOffsetInSlideCoordinateSystem = ctx.image_origin_mm[1]
    ds.TotalPixelMatrixOriginSequence = [origin]
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.Rows = ds.Columns = TILE_SIZE
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    measures = Dataset()
    measures.PixelSpacing = [outcome.slide.mpp[1] / 1000.0, outcome.slide.mpp[0] / 1000.0]
    measures.SliceThickness = NOMINAL_THICKNESS_MM
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.NumberOfFrames = 1
    return ds
