"""Burst benchmark of the PACS loop: N series from parallel senders → N SRs in Orthanc.

    python benchmarks/pacs_burst.py --series 50 --senders 4 [--via grpc]

Four pynetdicom senders C-STORE N distinct synthetic DICOM-WSI series (two instances each) into
the marrowscope SCP at once; each stable series is analysed in-process with the fast fake
segmenter and its SR + ANN are stored into a throw-away Orthanc over STOW-RS. Prints how long
receiving and draining took and checks: all instances received, all series analysed, exactly N
SRs and N ANNs in Orthanc.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from orthanc_fixture import free_port, start_orthanc, write_small_wsi  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402

from adapters.pacs.config import DicomWebServer  # noqa: E402
from adapters.pacs.cstore_scu import CStoreSender, DicomPeer  # noqa: E402
from adapters.pacs.stow import DicomWebStore  # noqa: E402
from service.pacs.ledger import RouteState  # noqa: E402
from service.pacs.ports import JobSubmitter  # noqa: E402
from service.pacs.router import RouterPolicy  # noqa: E402
from service.pacs.submit_local import LocalJobSubmitter  # noqa: E402
from service.pipeline.params import AnalysisParams  # noqa: E402
from service.transports.scp_app import build_pacs_service  # noqa: E402
from service.transports.scp_config import CallerRule, ScpConfig  # noqa: E402


def uid(*parts: object) -> str:
    return "2.25." + str(int(hashlib.sha256(repr(parts).encode()).hexdigest()[:30], 16))


def clone_series(template: list[Dataset], index: int) -> list[Dataset]:
    """The template slide as a new study/series (new UIDs, same pixels)."""
    out = []
    for k, ds in enumerate(template):
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        copy = dcmread(io.BytesIO(buf.getvalue()))
        copy.StudyInstanceUID = uid("study", index)
        copy.SeriesInstanceUID = uid("series", index)
        copy.SOPInstanceUID = uid("instance", index, k)
        copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
        copy.PatientID = f"BURST-{index:04d}"
        out.append(copy)
    return out


@contextmanager
def job_service(args: argparse.Namespace, tmp: Path) -> Iterator[JobSubmitter]:
    if args.via == "local":
        yield LocalJobSubmitter(tmp / "results", AnalysisParams(segmenter="fake"),
                                outputs=("sr", "ann"), workers=args.workers)
        return
    from service.client import AnalysisClient
    from service.config import ServerConfig
    from service.pacs.submit_grpc import GrpcJobSubmitter
    from service.transports.grpc.inprocess import ServerThread

    token = "burst-admin-token-0123456789"
    config = ServerConfig(host="127.0.0.1", port=0, data_dir=tmp / "grpc-data",
                          slide_roots=(tmp / "spool",), segmenter="fake",
                          tokens=f"{token} admin burst", workers=args.workers,
                          queue_limit=max(64, args.series))
    with ServerThread(config) as server:
        server.wait_ready()
        yield GrpcJobSubmitter("", client=AnalysisClient(f"127.0.0.1:{server.port}", token),
                               segmenter="fake")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="analysis threads")
    parser.add_argument("--stable-s", type=float, default=1.0)
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--via", choices=("local", "grpc"), default="local",
                        help="analyse in the SCP process, or through an in-process "
                             "`marrowscope serve` (gRPC, spawned workers)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pacs-burst-") as tmp_name:
        tmp = Path(tmp_name)
        template = [dcmread(p) for p in write_small_wsi(tmp / "template")]
        batches = [clone_series(template, i) for i in range(args.series)]
        port = free_port()
        (tmp / "spool").mkdir()
        with start_orthanc(tmp / "orthanc") as orthanc, job_service(args, tmp) as submitter:
            store = DicomWebStore(DicomWebServer("orthanc", orthanc.dicomweb_url, timeout_s=30))
            callers = tuple(CallerRule.parse(f"SENDER{i}@127.0.0.1") for i in range(args.senders))
            service = build_pacs_service(
                ScpConfig(spool_dir=tmp / "spool", port=port, stable_age_s=args.stable_s,
                          allowed_callers=callers, min_free_bytes=0),
                submitter, store, RouterPolicy(poll_interval_s=0.2),
            )
            service.start()
            try:
                t0 = time.monotonic()

                def send(sender_index: int) -> list[int]:
                    peer = DicomPeer("MARROWSCOPE", "127.0.0.1", port, f"SENDER{sender_index}")
                    statuses: list[int] = []
                    for batch in batches[sender_index::args.senders]:
                        statuses += CStoreSender(peer).send(batch)
                    return statuses

                with ThreadPoolExecutor(args.senders) as pool:
                    statuses = [s for part in pool.map(send, range(args.senders)) for s in part]
                t_received = time.monotonic() - t0
                drained = service.router.wait_idle(args.timeout_s)
                # wait_idle is also true before the last series became stable: re-check
                while drained and service.ledger.counts().get(RouteState.STORED.value, 0) < \
                        args.series and time.monotonic() - t0 < args.timeout_s:
                    time.sleep(0.2)
                    drained = service.router.wait_idle(args.timeout_s)
                t_drained = time.monotonic() - t0
                counts = service.ledger.counts()
                received = service.scp.spool.instance_count()
            finally:
                service.stop()
            n_sr = len(orthanc.instances_of_modality("SR"))
            n_ann = len(orthanc.instances_of_modality("ANN"))

    expected_instances = args.series * len(template)
    ok_status = sum(1 for s in statuses if s == 0)
    print(f"series {args.series}, senders {args.senders}, analysis workers {args.workers} "
          f"({args.via}), "
          f"stable age {args.stable_s} s, segmenter fake")
    print(f"received {received}/{expected_instances} instances "
          f"({ok_status} success statuses) in {t_received:.1f} s "
          f"({expected_instances / t_received:.1f} instances/s)")
    print(f"routes {counts}")
    print(f"SRs in Orthanc {n_sr}, ANNs {n_ann} (expected {args.series} each)")
    print(f"time to drain (first send → last result stored) {t_drained:.1f} s, "
          f"{args.series / t_drained:.2f} series/s")
    ok = (received == expected_instances and ok_status == expected_instances
          and counts.get(RouteState.STORED.value, 0) == args.series
          and n_sr == args.series and n_ann == args.series)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
