"""The C-STORE SCP on loopback: allow-list, durable spool, stable series, refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from orthanc_fixture import write_small_wsi
from pydicom import dcmread

from adapters.pacs.cstore_scu import CStoreSender, DicomPeer
from service.domain.errors import OutputError
from service.transports.scp import STATUS_DATASET_MISMATCH, STATUS_OUT_OF_RESOURCES, StorageScp
from service.transports.scp_config import CallerRule, ScpConfig
from service.transports.scp_spool import SpooledSeries


@pytest.fixture(scope="module")
def wsi_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_small_wsi(tmp_path_factory.mktemp("wsi"))


class Announcements:
    def __init__(self) -> None:
        self.series: list[SpooledSeries] = []

    def __call__(self, series: SpooledSeries) -> None:
        self.series.append(series)


def start_scp(tmp_path: Path, announced: Announcements, **overrides: object) -> StorageScp:
    settings: dict[str, object] = {
        "spool_dir": tmp_path / "spool", "port": 0, "stable_age_s": 0.5,
        "allowed_callers": (CallerRule.parse("SENDER@127.0.0.1"),), "min_free_bytes": 0,
    }
    settings.update(overrides)
    scp = StorageScp(ScpConfig(**settings), announced)  # type: ignore[arg-type]
    scp.start()
    return scp


@pytest.fixture
def announced() -> Announcements:
    return Announcements()


@pytest.fixture
def scp(tmp_path: Path, announced: Announcements) -> Iterator[StorageScp]:
    server = start_scp(tmp_path, announced)
    yield server
    server.stop()


def sender(scp: StorageScp, calling: str = "SENDER") -> CStoreSender:
    return CStoreSender(DicomPeer("MARROWSCOPE", "127.0.0.1", scp.port, calling, timeout_s=10))


def wait_for(predicate: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_instances_are_spooled_under_hash_names_and_announced_once_stable(
    scp: StorageScp, announced: Announcements, wsi_files: list[Path]
) -> None:
    datasets = [dcmread(p) for p in wsi_files]
    assert sender(scp).store(datasets) == [0, 0]
    files = sorted((scp.config.spool_dir / "series").rglob("*.dcm"))
    assert len(files) == 2
    uids = {str(ds.SOPInstanceUID) for ds in datasets} | {str(datasets[0].SeriesInstanceUID)}
    for f in files:
        assert len(f.stem) == 64
        assert all(uid not in str(f) for uid in uids)
        assert dcmread(f).SOPInstanceUID in uids
    assert wait_for(lambda: len(announced.series) == 1)
    series = announced.series[0]
    assert series.series_uid == str(datasets[0].SeriesInstanceUID)
    assert series.instance_count == 2
    time.sleep(1.0)
    assert len(announced.series) == 1  # announced once, not on every poll


def test_same_series_sent_again_is_announced_again_with_same_digest(
    scp: StorageScp, announced: Announcements, wsi_files: list[Path]
) -> None:
    datasets = [dcmread(p) for p in wsi_files]
    sender(scp).store(datasets)
    assert wait_for(lambda: len(announced.series) == 1)
    sender(scp).store(datasets)
    assert wait_for(lambda: len(announced.series) == 2)
    assert announced.series[0].content_digest == announced.series[1].content_digest
    assert scp.spool.instance_count() == 2


def test_unknown_calling_ae_is_refused(scp: StorageScp, wsi_files: list[Path]) -> None:
    with pytest.raises(OutputError, match="association refused"):
        sender(scp, calling="STRANGER").store([dcmread(wsi_files[1])])
    assert scp.spool.instance_count() == 0


def test_known_ae_from_another_host_is_refused(
    tmp_path: Path, announced: Announcements, wsi_files: list[Path]
) -> None:
    server = start_scp(tmp_path, announced,
                       allowed_callers=(CallerRule.parse("SENDER@10.9.8.7"),))
    try:
        with pytest.raises(OutputError, match="association refused"):
            sender(server).store([dcmread(wsi_files[1])])
    finally:
        server.stop()


def test_malformed_instance_is_rejected_and_scp_keeps_serving(
    scp: StorageScp, wsi_files: list[Path]
) -> None:
    good = dcmread(wsi_files[1])
    bad = dcmread(wsi_files[1])  # read, not built: wsidicomizer turns on pydicom's future mode
    bad.SOPInstanceUID = "1.2.3.4.5"
    del bad.SeriesInstanceUID
    del bad.PixelData
    statuses = sender(scp).send([bad, good])
    assert statuses == [STATUS_DATASET_MISMATCH, 0]
    assert sender(scp).send([good]) == [0]
    assert scp.spool.instance_count() == 1


def test_disk_watermark_refuses_with_out_of_resources(
    tmp_path: Path, announced: Announcements, wsi_files: list[Path]
) -> None:
    server = start_scp(tmp_path, announced, min_free_bytes=2**62)
    try:
        assert sender(server).send([dcmread(wsi_files[1])]) == [STATUS_OUT_OF_RESOURCES]
        assert server.spool.instance_count() == 0
    finally:
        server.stop()


def test_store_targets_and_caller_rules_parse_or_fail_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.domain.errors import InvalidInput, SlideNotFound
    from service.transports.scp_app import parse_store_target

    assert parse_store_target("cstore:PACS@10.0.0.5:104").name == "cstore:PACS@10.0.0.5:104"
    monkeypatch.delenv("MARROWSCOPE_DICOMWEB_CONFIG", raising=False)
    with pytest.raises(SlideNotFound, match="not configured"):
        parse_store_target("dicomweb:pacs")
    with pytest.raises(InvalidInput):
        parse_store_target("http://10.0.0.5/dicom-web")  # URLs only from configuration
    with pytest.raises(InvalidInput):
        parse_store_target("cstore:PACS@10.0.0.5")
    rule = CallerRule.parse("ORTHANC@127.0.0.1,10.1.0.0/16")
    assert rule.allows("ORTHANC", "10.1.2.3")
    assert not rule.allows("ORTHANC", "10.2.0.1")
    assert not rule.allows("OTHER", "127.0.0.1")
    with pytest.raises(InvalidInput):
        CallerRule.parse("ORTHANC")


@pytest.mark.parametrize(
    ("syntax", "accepted"),
    [
        ("1.2.840.10008.1.2.1", True),  # explicit VR little endian
        ("1.2.840.10008.1.2.4.50", True),  # JPEG baseline
        ("1.2.840.10008.1.2.4.90", True),  # JPEG 2000 lossless
        ("1.2.840.10008.1.2.4.91", True),  # JPEG 2000
        ("1.2.840.10008.1.2.4.80", False),  # JPEG-LS: not offered
    ],
)
def test_wsi_transfer_syntaxes_negotiated(scp: StorageScp, syntax: str, accepted: bool) -> None:
    from pynetdicom import AE

    from service.transports.scp import VL_WSI_STORAGE

    ae = AE(ae_title="SENDER")
    ae.add_requested_context(VL_WSI_STORAGE, syntax)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="MARROWSCOPE")
    # pynetdicom aborts an association in which no context was accepted
    assert assoc.is_established is accepted
    if assoc.is_established:
        assert len(assoc.accepted_contexts) == 1
        assoc.release()


def test_uncompressed_instance_is_stored(scp: StorageScp, wsi_files: list[Path]) -> None:
    ds = dcmread(wsi_files[1])
    ds.decompress()  # → explicit VR little endian
    assert str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.1"
    assert sender(scp).send([ds]) == [0]
    (stored,) = (scp.config.spool_dir / "series").rglob("*.dcm")
    assert str(dcmread(stored).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.1"
