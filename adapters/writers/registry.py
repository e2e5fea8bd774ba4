"""Maps output names to writers; each writer module is imported only when requested."""

from __future__ import annotations

from service.domain.errors import InvalidInput
from service.ports.outputs import ResultWriter

WRITERS = ("overlay", "geojson", "sr", "ann", "seg")


def build_writers(names: tuple[str, ...]) -> list[ResultWriter]:
    """Writers for ``names`` in the fixed order of ``WRITERS`` (duplicates ignored)."""
    unknown = sorted(set(names) - set(WRITERS))
    if unknown:
        raise InvalidInput(
            f"unknown output {', '.join(map(repr, unknown))}; choose from {', '.join(WRITERS)}"
        )
    return [_build(name) for name in WRITERS if name in names]


def _build(name: str) -> ResultWriter:
    if name == "overlay":
        from adapters.writers.overlay import OverlayWriter

        return OverlayWriter()
    if name == "geojson":
        from adapters.writers.geojson import GeoJsonWriter

        return GeoJsonWriter()
    if name == "sr":
        from adapters.writers.dicom_sr import StructuredReportWriter

        return StructuredReportWriter()
    if name == "ann":
        from adapters.writers.dicom_ann import BulkAnnotationWriter

        return BulkAnnotationWriter()
    from adapters.writers.dicom_seg import SegmentationWriter

    return SegmentationWriter()
