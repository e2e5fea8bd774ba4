"""DICOM SR (Comprehensive 3D SR, TID 1500) with the slide's cellularity measurements.

One TID 1410 planar ROI group for the analysed marrow region: an SCOORD3D polygon (the convex
hull of the coarse marrow outline, in the slide's frame of reference, mm), Finding = SCT
14016003 Bone marrow, tracking UID + identifier, TID 4019 algorithm identification and NUM
items. Meets what Slim needs to list and draw it: template 1500, subject class Specimen,
SCOORD3D in every group.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from shapely.geometry import Polygon, box

from adapters.writers import dicom_common as dc
from adapters.writers.identity import job_uid
from adapters.writers.vectorize import marrow_region
from service.ports.outputs import AnalysisOutcome

SR_SERIES_NUMBER = 9001
REGION_IDENTIFIER = "Analysed marrow region"


class StructuredReportWriter:
    """Writes ``sr.dcm``."""

    name = "sr"

    def write(self, outcome: AnalysisOutcome, out_dir: Path) -> list[Path]:
        path = out_dir / "sr.dcm"
        build_sr(outcome).save_as(path, enforce_file_format=True)
        return [path]


def build_sr(outcome: AnalysisOutcome) -> hd.sr.Comprehensive3DSR:
    ctx = dc.require_dicom(outcome, "DICOM SR")
    source = dc.source_image(outcome, "DICOM SR")
    key = outcome.job_key
    specimen = source.SpecimenDescriptionSequence[0]
    observation = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=job_uid("marrowscope", "device"),
                name=dc.MODEL_NAME,
                manufacturer_name=dc.MANUFACTURER,
                model_name=dc.MODEL_NAME,
            ),
        ),
        subject_context=hd.sr.SubjectContext(
            subject_class=codes.DCM.Specimen,
            subject_class_specific_context=hd.sr.SubjectContextSpecimen(
                uid=specimen.SpecimenUID,
                identifier=specimen.SpecimenIdentifier,
                container_identifier=source.ContainerIdentifier,
            ),
        ),
    )
    region_px0 = marrow_outline_px0(outcome)
    region_mm = dc.px0_to_slide_mm(np.asarray(region_px0.exterior.coords), outcome.slide, ctx)
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=job_uid(key, "sr/region/1"), identifier=f"{REGION_IDENTIFIER} 1"
        ),
        referenced_region=hd.sr.ImageRegion3D(
            graphic_type=hd.sr.GraphicTypeValues3D.POLYGON,
            graphic_data=region_mm,
            frame_of_reference_uid=source.FrameOfReferenceUID,
        ),
        finding_type=codes.SCT.BoneMarrow,
        algorithm_id=algorithm_id(outcome),
        measurements=measurements(outcome),
    )
    report = hd.sr.MeasurementReport(
        observation_context=observation,
        procedure_reported=codes.DCM.WholeSlideImaging,
        imaging_measurements=[group],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source],
        content=report,
        series_instance_uid=job_uid(key, "sr/series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=job_uid(key, "sr/instance"),
        instance_number=1,
        manufacturer=dc.MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        record_evidence=bool(ctx.sop_instance_uids),
        series_description="marrowscope cellularity report",
    )
    sr.CodingSchemeIdentificationSequence = [dc.private_scheme_item()]
    sr.SoftwareVersions = outcome.result.provenance.software_version
    dc.freeze_times(sr, *dc.frozen_date_time(ctx))
    return sr


def algorithm_id(outcome: AnalysisOutcome) -> hd.sr.AlgorithmIdentification:
    """TID 4019: name, version and parameters (model sha256, fat rule and threshold, ...)."""
    return hd.sr.AlgorithmIdentification(
        name=dc.ALGORITHM_NAME,
        version=outcome.result.provenance.software_version,
        parameters=[f"{k}={v}" for k, v in dc.algorithm_parameters(outcome).items()],
    )


def measurements(outcome: AnalysisOutcome) -> list[hd.sr.Measurement]:
    """NUM items from the pixel-count numbers of ``AnalysisResult``."""
    res = outcome.result
    algo = algorithm_id(outcome)
    percent = codes.UCUM.Percent
    mm2 = codes.UCUM.SquareMillimeter
    items: list[hd.sr.Measurement] = []
    if res.cellularity_pct is not None:
        items.append(hd.sr.Measurement(
            name=dc.CELLULARITY, value=res.cellularity_pct, unit=percent, algorithm_id=algo))
    if res.adipocyte_ratio_pct is not None:
        items.append(hd.sr.Measurement(
            name=codes.DCM.FatFraction, value=res.adipocyte_ratio_pct, unit=percent,
            algorithm_id=algo))
    items.append(hd.sr.Measurement(
        name=codes.SCT.Area, value=res.marrow_area_mm2, unit=mm2, algorithm_id=algo,
        finding_sites=[hd.sr.FindingSite(codes.SCT.BoneMarrow)]))
    items.append(hd.sr.Measurement(
        name=codes.SCT.Area, value=res.hematopoietic_area_mm2, unit=mm2, algorithm_id=algo,
        finding_sites=[hd.sr.FindingSite(dc.HEMATOPOIETIC_TISSUE)]))
    items.append(hd.sr.Measurement(
        name=codes.SCT.Area, value=res.adipose_area_mm2, unit=mm2, algorithm_id=algo,
        finding_sites=[hd.sr.FindingSite(dc.ADIPOSE_TISSUE)]))
    items.append(hd.sr.Measurement(
        name=dc.CELL_COVERAGE, value=res.cell_coverage_pct, unit=percent, algorithm_id=algo))
    return items


def marrow_outline_px0(outcome: AnalysisOutcome) -> Polygon:
    """Convex hull of the marrow (level-0 px); the whole image when there is no marrow.

    From the coarse marrow outline (a block-downsampled map), so no polygon of the slide is held.
    """
    marrow = marrow_region(outcome)
    hull = marrow.convex_hull if not marrow.is_empty else None
    if not isinstance(hull, Polygon) or hull.area == 0:
        return box(0, 0, outcome.slide.width_px0, outcome.slide.height_px0)
    return hull
