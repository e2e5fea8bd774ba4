"""What the DICOM writers share: the referenced slide image, fixed dates, slide coordinates.

highdicom copies patient, study and specimen from a source image dataset; we build that
dataset from the slide's ``DicomContext`` (the level-0 instance is ``sop_instance_uids[0]``).
"""

from __future__ import annotations

from collections.abc import Iterable

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from service.domain.errors import OutputError
from service.domain.slide import DicomContext, SlideInfo
from service.ports.outputs import AnalysisOutcome

VL_WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
MANUFACTURER = "marrowscope"
MODEL_NAME = "marrowscope"
ALGORITHM_NAME = "marrowscope cellularity"
PRIVATE_SCHEME = "99MRWSC"
PRIVATE_SCHEME_NAME = "marrowscope private codes"
PRIVATE_SCHEME_ORG = "marrowscope project"
FALLBACK_DATE = "19700101"
FALLBACK_TIME = "000000"


def require_dicom(outcome: AnalysisOutcome, what: str) -> DicomContext:
    """The slide's DICOM identity, or an OutputError naming the missing metadata."""
    ctx = outcome.slide.dicom
    if ctx is None:
        raise OutputError(
            f"{what} needs patient/study metadata: the slide is not DICOM and none was given "
            "(pass the DICOM metadata flags or request fields); GeoJSON and overlay are written"
        )
    return ctx


def source_image(outcome: AnalysisOutcome, what: str) -> Dataset:
    """A stand-in for the slide's level-0 image with what highdicom copies from it."""
    ctx = require_dicom(outcome, what)
    slide = outcome.slide
    key = outcome.job_key
    from adapters.writers.identity import job_uid

    ds = Dataset()
    ds.SOPClassUID = VL_WSI_SOP_CLASS
    ds.SOPInstanceUID = (
        ctx.sop_instance_uids[0] if ctx.sop_instance_uids else job_uid(key, "source/instance")
    )
    ds.StudyInstanceUID = ctx.study_instance_uid
    ds.SeriesInstanceUID = ctx.series_instance_uid or job_uid(key, "source/series")
    ds.FrameOfReferenceUID = ctx.frame_of_reference_uid or job_uid(key, "source/frame")
    ds.Modality = "SM"
    ds.PatientID = ctx.patient_id
    ds.PatientName = ctx.patient_name
    ds.PatientBirthDate = ctx.patient_birth_date
    ds.PatientSex = ctx.patient_sex
    ds.AccessionNumber = ctx.accession_number
    ds.StudyID = ctx.study_id
    ds.StudyDate = ctx.study_date
    ds.StudyTime = ctx.study_time
    ds.ReferringPhysicianName = ctx.referring_physician_name
    ds.ContainerIdentifier = ctx.container_identifier or slide.stem
    ds.IssuerOfTheContainerIdentifierSequence = []
    ds.ContainerTypeCodeSequence = []
    description = Dataset()
    description.SpecimenIdentifier = ctx.specimen_identifier or ds.ContainerIdentifier
    description.SpecimenUID = ctx.specimen_uid or job_uid(key, "source/specimen")
    description.IssuerOfTheSpecimenIdentifierSequence = []
    description.SpecimenPreparationSequence = []
    if ctx.specimen_description:
        description.SpecimenShortDescription = ctx.specimen_description[:64]
    ds.SpecimenDescriptionSequence = [description]
    ds.TotalPixelMatrixColumns = slide.width_px0
    ds.TotalPixelMatrixRows = slide.height_px0
    ds.ImageOrientationSlide = list(ctx.image_orientation)
    return ds


def frozen_date_time(ctx: DicomContext | None) -> tuple[str, str]:
    """Content date/time derived from the slide (its study), so reruns are byte-identical."""
    if ctx is None or not ctx.study_date:
        return FALLBACK_DATE, FALLBACK_TIME
    return ctx.study_date, (ctx.study_time or FALLBACK_TIME).split(".")[0]


def freeze_times(ds: Dataset, date: str, time: str) -> None:
    """Replaces the wall-clock dates highdicom inserts; drops the optional creation stamps."""
    for keyword in ("InstanceCreationDate", "InstanceCreationTime"):
        if keyword in ds:
            delattr(ds, keyword)
    if "ContentDate" in ds:
        ds.ContentDate = date
        ds.ContentTime = time
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time


def private_scheme_item() -> Dataset:
    """Coding Scheme Identification Sequence item declaring our private designator."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = PRIVATE_SCHEME_ORG
    return item


def private_code(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning)


HEMATOPOIETIC_TISSUE = private_code("HEMATOPOIETIC", "Hematopoietic tissue")
CELLULARITY = private_code("CELLULARITY", "Marrow cellularity")
CELL_COVERAGE = private_code("CELLCOVERAGE", "Marrow coverage of slide")
ADIPOSE_TISSUE = codes.SCT.AdiposeTissue  # SCT 55603005 "Fat"
TISSUE = codes.SCT.Tissue  # SCT 85756007


def algorithm_parameters(outcome: AnalysisOutcome) -> dict[str, str]:
    """Parameters that determined the numbers (TID 4019 / Algorithm Identification)."""
    res = outcome.result
    params = {str(k): str(v) for k, v in sorted(res.provenance.parameters.items())}
    params["segmenter"] = res.segmenter
    params["model_sha256"] = res.provenance.segmenter_sha256 or "none"
    params["fat_rule"] = res.fat_method
    params["fat_threshold"] = "none" if res.fat_threshold is None else f"{res.fat_threshold:g}"
    params["mpp_analyzed"] = f"{res.mpp_analyzed:g}"
    return {k: v[:64] for k, v in params.items()}


def algorithm_family(outcome: AnalysisOutcome) -> hd.sr.CodedConcept:
    """Artificial Intelligence for learned segmenters, Image Processing for the classical one."""
    code = codes.DCM.ImageProcessing if outcome.result.segmenter == "classical" else (
        codes.DCM.ArtificialIntelligence
    )
    return hd.sr.CodedConcept.from_code(code)


def algorithm_sequence(outcome: AnalysisOutcome) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME,
        family=algorithm_family(outcome),
        version=outcome.result.provenance.software_version,
        source=MANUFACTURER,
        parameters=algorithm_parameters(outcome),
    )


def px0_to_slide_mm(
    points_px0: npt.NDArray[np.float64], slide: SlideInfo, ctx: DicomContext
) -> npt.NDArray[np.float64]:
    """(N, 2) level-0 image coordinates (corner origin) -> (N, 3) slide coordinates in mm.

    ``image_origin_mm`` is the slide position of the centre of level-0 pixel (0, 0) (DICOM's
    Total Pixel Matrix Origin); highdicom's image coordinates put that centre at (0.5, 0.5).
    """
    spacing_mm = (slide.mpp[1] / 1000.0, slide.mpp[0] / 1000.0)  # (row, column) spacing
    transformer = hd.spatial.ImageToReferenceTransformer(
        image_position=(ctx.image_origin_mm[0], ctx.image_origin_mm[1], 0.0),
        image_orientation=ctx.image_orientation,
        pixel_spacing=spacing_mm,
    )
    return np.asarray(transformer(np.asarray(points_px0, dtype=np.float64)), dtype=np.float64)


def strings(values: Iterable[object]) -> list[str]:
    return [str(v) for v in values]
