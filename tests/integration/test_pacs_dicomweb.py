"""Slides read over DICOMweb (WADO-RS via wsidicom) from a real Orthanc, compared with files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from orthanc_fixture import OrthancServer, requires_orthanc, start_orthanc, write_small_wsi
from pydicom import dcmread

from adapters.pacs.config import DicomWebServers, load_dicomweb_servers, servers_from_dict
from adapters.slides.dicom_slide import DicomSlide
from adapters.slides.dicomweb import DicomWebSlide, open_dicomweb_slide, parse_reference
from service.domain.errors import InvalidInput, SlideNotFound, SlideUnreadable
from service.domain.geometry import Box


@pytest.fixture(scope="module")
def wsi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wsi")
    write_small_wsi(folder)
    return folder


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, wsi_dir: Path) -> Iterator[OrthancServer]:
    if requires_orthanc.args[0]:
        pytest.skip(requires_orthanc.kwargs["reason"])
    with start_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        for path in sorted(wsi_dir.glob("*.dcm")):
            server.upload(path.read_bytes())
        yield server


def uids(wsi_dir: Path) -> tuple[str, str]:
    ds = dcmread(next(wsi_dir.glob("*.dcm")), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def servers(url: str, **extra: object) -> DicomWebServers:
    return servers_from_dict({"servers": {"pacs": {"url": url, "timeout_s": 10, "retries": 1,
                                                   "backoff_s": 0.05, **extra}}})


def test_reference_parsing_needs_a_configured_server_and_real_uids() -> None:
    config = servers("http://127.0.0.1:1/dicom-web", headers={"X-Site": "a"})
    ref = parse_reference("dicomweb:pacs/1.2.3/1.2.4", config)
    assert (ref.server.name, ref.study_uid, ref.series_uid) == ("pacs", "1.2.3", "1.2.4")
    url_ref = parse_reference("http://127.0.0.1:1/dicom-web/studies/1.2/series/1.3", config)
    assert url_ref.server.headers == {"X-Site": "a"}  # a configured base URL brings its settings
    with pytest.raises(SlideNotFound, match="not configured"):
        parse_reference("dicomweb:elsewhere/1.2.3/1.2.4", config)
    with pytest.raises(InvalidInput, match="not a DICOM UID"):
        parse_reference("dicomweb:pacs/1.2.3/1.2.x", config)
    with pytest.raises(InvalidInput):
        parse_reference("dicomweb:pacs/1.2.3", config)


def test_configuration_file_reads_secrets_from_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    cfg = tmp_path / "dicomweb.json"
    cfg.write_text(json.dumps({"servers": {"pacs": {
        "url": "https://pacs.example/dicom-web", "token_file": str(tmp_path / "token")}}}))
    server = load_dicomweb_servers(cfg).get("")
    assert server.headers["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in repr(server)


@pytest.mark.orthanc
def test_dicomweb_slide_matches_the_files(orthanc: OrthancServer, wsi_dir: Path) -> None:
    study, series = uids(wsi_dir)
    web = DicomWebSlide(f"dicomweb:pacs/{study}/{series}", servers=servers(orthanc.dicomweb_url))
    local = DicomSlide(str(wsi_dir))
    try:
        assert web.info.format == "dicomweb"
        assert web.info.levels == local.info.levels
        assert web.info.mpp == local.info.mpp
        assert web.info.dicom == local.info.dicom
        for level in (0, 1):
            box = Box(100, 60, 700, 500)
            np.testing.assert_array_equal(web.read_region(box, level),
                                          local.read_region(box, level))
        # level-0 coordinates past the edge are glass, as for files
        edge = Box(900, 700, 300, 200)
        np.testing.assert_array_equal(web.read_region(edge, 1), local.read_region(edge, 1))
    finally:
        web.close()
        local.close()


@pytest.mark.orthanc
def test_dicomweb_analysis_gives_the_same_cellularity_as_files(
    orthanc: OrthancServer, wsi_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.bootstrap import build_segmenter, open_slide
    from service.pipeline.analyze import analyze
    from service.pipeline.params import AnalysisParams

    cfg = tmp_path / "dicomweb.json"
    cfg.write_text(json.dumps({"servers": {"pacs": {"url": orthanc.dicomweb_url}}}))
    monkeypatch.setenv("MARROWSCOPE_DICOMWEB_CONFIG", str(cfg))
    study, series = uids(wsi_dir)
    params = AnalysisParams(segmenter="classical")
    segmenter = build_segmenter(params)
    segmenter.load()
    results = []
    for reference in (str(wsi_dir), f"dicomweb:pacs/{study}/{series}"):
        slide = open_slide(reference)
        try:
            results.append(analyze(slide, segmenter, params))
        finally:
            slide.close()
    from_files, from_web = results
    assert from_web.result.cellularity_pct is not None
    assert from_web.result.cellularity_pct == pytest.approx(from_files.result.cellularity_pct)
    assert from_web.job_key == from_files.job_key  # same slide → same result UIDs


@pytest.mark.orthanc
def test_missing_series_is_not_found(orthanc: OrthancServer, wsi_dir: Path) -> None:
    study, _ = uids(wsi_dir)
    with pytest.raises(SlideNotFound, match="series not found"):
        DicomWebSlide(f"dicomweb:pacs/{study}/1.2.3.4", servers=servers(orthanc.dicomweb_url))


@pytest.mark.orthanc
@requires_orthanc
def test_credentials_from_configuration_are_sent(tmp_path: Path, wsi_dir: Path) -> None:
    with start_orthanc(tmp_path / "orthanc", credentials=("reader", "pw-123")) as server:
        for path in sorted(wsi_dir.glob("*.dcm")):
            server.upload(path.read_bytes())
        (tmp_path / "pw").write_text("pw-123")
        study, series = uids(wsi_dir)
        reference = f"dicomweb:pacs/{study}/{series}"
        with pytest.raises(SlideUnreadable, match="401"):
            DicomWebSlide(reference, servers=servers(server.dicomweb_url))
        good = servers(server.dicomweb_url, username="reader", password_file=str(tmp_path / "pw"))
        DicomWebSlide(reference, servers=good).close()


def test_unconfigured_reference_fails_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARROWSCOPE_DICOMWEB_CONFIG", raising=False)
    with pytest.raises(SlideNotFound, match="MARROWSCOPE_DICOMWEB_CONFIG"):
        open_dicomweb_slide("dicomweb:pacs/1.2.3/1.2.4")
