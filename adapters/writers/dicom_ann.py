"""DICOM Microscopy Bulk Simple Annotations (``ann.dcm``) over the slide's level-0 image.

2D image coordinates (level-0 pixels, corner origin, float32). Group 1: hematopoietic tissue,
its polygons split into hole-free pieces (ANN has no holes; the pieces tile the tissue
exactly). Group 2: adipocytes (SCT 55603005), one polygon each with its pixel-count area.
Both groups are AUTOMATIC with the algorithm identification and carry a display colour.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
import shapely
from pydicom.sr.codedict import codes
from shapely.geometry import Polygon

from adapters.writers import dicom_common as dc
from adapters.writers.holes import hole_free_pieces
from adapters.writers.identity import job_uid
from adapters.writers.vectorize import Vectors, vectorize
from service.ports.outputs import AnalysisOutcome

ANN_SERIES_NUMBER = 9002
HEMATOPOIETIC_RGB = (160, 32, 240)
ADIPOCYTE_RGB = (0, 200, 255)


class BulkAnnotationWriter:
    """Writes ``ann.dcm``."""

    name = "ann"

    def write(self, outcome: AnalysisOutcome, out_dir: Path) -> list[Path]:
        path = out_dir / "ann.dcm"
        build_ann(outcome, vectorize(outcome)).save_as(path, enforce_file_format=True)
        return [path]


def build_ann(outcome: AnalysisOutcome, vectors: Vectors) -> hd.ann.MicroscopyBulkSimpleAnnotations:
    ctx = dc.require_dicom(outcome, "DICOM bulk annotations")
    source = dc.source_image(outcome, "DICOM bulk annotations")
    key = outcome.job_key
    algorithm = dc.algorithm_sequence(outcome)
    groups: list[hd.ann.AnnotationGroup] = []
    tissue = [piece for poly in vectors.hematopoietic.geoms for piece in hole_free_pieces(poly)]
    if tissue:
        groups.append(hd.ann.AnnotationGroup(
            number=len(groups) + 1,
            uid=job_uid(key, "ann/group/hematopoietic"),
            label="Hematopoietic tissue",
            annotated_property_category=dc.TISSUE,
            annotated_property_type=dc.HEMATOPOIETIC_TISSUE,
            graphic_type=hd.ann.GraphicTypeValues.POLYGON,
            graphic_data=[_ring(p) for p in tissue],
            algorithm_type=hd.ann.AnnotationGroupGenerationTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            description="hole-free pieces tiling the hematopoietic tissue",
            display_color=hd.color.CIELabColor.from_rgb(*HEMATOPOIETIC_RGB),
        ))
    if vectors.adipocytes:
        areas = np.array([a.area_um2 for a in vectors.adipocytes], dtype=np.float32)
        groups.append(hd.ann.AnnotationGroup(
            number=len(groups) + 1,
            uid=job_uid(key, "ann/group/adipocytes"),
            label="Adipocytes",
            annotated_property_category=dc.TISSUE,
            annotated_property_type=dc.ADIPOSE_TISSUE,
            graphic_type=hd.ann.GraphicTypeValues.POLYGON,
            graphic_data=[_ring(a.polygon) for a in vectors.adipocytes],
            algorithm_type=hd.ann.AnnotationGroupGenerationTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            measurements=[hd.ann.Measurements(
                name=codes.SCT.Area, values=areas, unit=codes.UCUM.SquareMicrometer)],
            description="fat vacuoles; area from pixel counts",
            display_color=hd.color.CIELabColor.from_rgb(*ADIPOCYTE_RGB),
        ))
    if not groups:
        from service.domain.errors import OutputError

        raise OutputError("DICOM bulk annotations: no marrow was found, nothing to annotate")
    ann = hd.ann.MicroscopyBulkSimpleAnnotations(
        source_images=[source],
        annotation_coordinate_type=hd.ann.AnnotationCoordinateTypeValues.SCOORD,
        annotation_groups=groups,
        series_instance_uid=job_uid(key, "ann/series"),
        series_number=ANN_SERIES_NUMBER,
        sop_instance_uid=job_uid(key, "ann/instance"),
        instance_number=1,
        manufacturer=dc.MANUFACTURER,
        manufacturer_model_name=dc.MODEL_NAME,
        software_versions=outcome.result.provenance.software_version,
        device_serial_number="0",
        content_description="marrowscope cellularity annotations",
        content_label="MARROW_ANN",
        series_description="marrowscope annotations",
    )
    ann.CodingSchemeIdentificationSequence = [dc.private_scheme_item()]
    dc.freeze_times(ann, *dc.frozen_date_time(ctx))
    return ann


def _ring(poly: Polygon) -> npt.NDArray[np.float32]:
    """Exterior vertices (open ring, as ANN requires), clockwise-agnostic, float32 level-0 px."""
    coords = np.asarray(shapely.get_coordinates(poly.exterior), dtype=np.float64)[:-1]
    return coords.astype(np.float32)
