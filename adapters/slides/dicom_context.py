"""DICOM header helpers shared by the DICOM-WSI adapters (file and DICOMweb).

``dicom_context_from_dataset`` turns a VL Whole Slide Microscopy dataset into the domain's
``DicomContext`` (the identity SR/ANN/SEG outputs need to join the slide's study).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.domain.slide import DicomContext

VL_WSI_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.77.1.6"
DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"


def is_dicom_file(path: str) -> bool:
    """True if the file has the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))
    except OSError:
        return False
    return head[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC


def sop_class_name(uid: str) -> str:
    """A readable name of a SOP class UID (``CT Image Storage``) or the UID itself."""
    from pydicom.uid import UID

    name = UID(uid).name if uid else ""
    return name if name and name != uid else (uid or "no SOP class")


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def dicom_context_from_dataset(ds: Any, sop_instance_uids: Iterable[str] = ()) -> DicomContext:
    """The ``DicomContext`` of a slide from one of its VL WSI instances (a pydicom Dataset)."""
    origin = (0.0, 0.0)
    origin_seq = ds.get("TotalPixelMatrixOriginSequence")
    if origin_seq:
        item = origin_seq[0]
        try:
            origin = (
                float(item.XOffsetInSlideCoordinateSystem),
                float(item.YOffsetInSlideCoordinateSystem),
            )
        except (AttributeError, TypeError, ValueError):
            origin = (0.0, 0.0)
    orientation = _floats(ds.get("ImageOrientationSlide"), 6)
    specimen_id = specimen_uid = specimen_desc = ""
    spec_seq = ds.get("SpecimenDescriptionSequence")
    if spec_seq:
        spec = spec_seq[0]
        specimen_id = _text(spec, "SpecimenIdentifier")
        specimen_uid = _text(spec, "SpecimenUID")
        specimen_desc = _text(spec, "SpecimenShortDescription") or _text(
            spec, "SpecimenDetailedDescription"
        )
    uids = tuple(sop_instance_uids) or ((_text(ds, "SOPInstanceUID"),) if "SOPInstanceUID" in ds
                                        else ())
    ctx_kwargs: dict[str, Any] = {}
    if orientation is not None:
        ctx_kwargs["image_orientation"] = orientation
    return DicomContext(
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID") or None,
        sop_instance_uids=uids,
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID") or None,
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_id=_text(ds, "StudyID"),
        accession_number=_text(ds, "AccessionNumber"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        referring_physician_name=_text(ds, "ReferringPhysicianName"),
        container_identifier=_text(ds, "ContainerIdentifier"),
        specimen_identifier=specimen_id,
        specimen_uid=specimen_uid,
        specimen_description=specimen_desc,
        image_origin_mm=origin,
        manufacturer=_text(ds, "Manufacturer"),
        **ctx_kwargs,
    )
