"""Load benchmark of the gRPC service against the fake (fast) segmenter.

1. ``--clients`` (64) concurrent clients, each on its own channel, each submitting ``--jobs`` jobs
   and watching them to the end: SubmitAnalysis latency p50/p99, errors, time until all are done.
2. ``--burst`` (200) concurrent submissions against a server whose queue limit is
   ``--queue-limit`` (64): how many were accepted, how many got RESOURCE_EXHAUSTED, and how fast
   the rejections came back.

The server is a real ``marrowscope serve`` process on a free port with a temporary data folder.

    .venv/bin/python benchmarks/grpc_load.py [--clients 64] [--jobs 1] [--burst 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.transports.grpc.stubs import pb, pb_grpc  # noqa: E402

TOKEN = "benchmark-token-0123456789"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def write_slide(folder: Path) -> Path:
    from adapters.synthetic.scene import SyntheticScene
    from adapters.synthetic.writers import write_png

    folder.mkdir(parents=True, exist_ok=True)
    scene = SyntheticScene(256, 256, mpp=2.0, seed=5)
    return Path(write_png(folder / "bench.png", 256, 256, scene.render_rgb))


@contextmanager
def serve(root: Path, queue_limit: int, workers: int, idle_workers: bool = False) -> Iterator[int]:
    """A server process; ``idle_workers``: workers take 60 s to load, so no job runs meanwhile
    (submissions are accepted while the segmenter loads)."""
    tokens = root / "tokens.txt"
    tokens.write_text(f"{TOKEN} admin bench\n")
    data = Path(tempfile.mkdtemp(prefix="data-", dir=root))
    command = [sys.executable, "-m", "service.transports.cli", "serve", "--port", "0",
               "--data-dir", str(data), "--slide-root", str(root / "slides"),
               "--token-file", str(tokens), "--segmenter", "fake",
               "--queue-limit", str(queue_limit), "--workers", str(workers)]
    env = {**os.environ, "MARROWSCOPE_FAKE_LOAD_S": "60"} if idle_workers else None
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    try:
        port = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on" in line:
                port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
            if "ready" in line or (port and idle_workers):
                break
        if not port:
            raise SystemExit("server did not start")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)


def request(slide: Path, key: str) -> pb.SubmitAnalysisRequest:
    return pb.SubmitAnalysisRequest(
        slide=pb.SlideReference(file=pb.FileSlide(path=str(slide))),
        parameters=pb.AnalysisParameters(segmenter="fake", mpp_override=2.0),
        outputs=["geojson"], idempotency_key=key,
    )


METADATA = (("authorization", f"Bearer {TOKEN}"),)


async def clients_run(port: int, slide: Path, clients: int, jobs: int) -> dict[str, object]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    done_states: dict[str, int] = {}

    async def one(i: int) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()  # time the RPC, not the TCP/HTTP2 handshake
            stub = pb_grpc.AnalysisServiceStub(channel)
            await ready.wait()
            for j in range(jobs):
                started = time.perf_counter()
                try:
                    reply = await stub.SubmitAnalysis(request(slide, f"load-{i}-{j}"),
                                                      metadata=METADATA, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    continue
                latencies.append(time.perf_counter() - started)
                last = None
                async for update in stub.WatchAnalysis(
                        pb.WatchAnalysisRequest(job_id=reply.job_id), metadata=METADATA,
                        timeout=600):
                    last = update.job.state
                name = pb.JobState.Name(last or 0)
                done_states[name] = done_states.get(name, 0) + 1

    ready = asyncio.Event()
    tasks = [asyncio.create_task(one(i)) for i in range(clients)]
    await asyncio.sleep(1.0)  # let every client connect, then release them together
    started = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    return {
        "clients": clients, "jobs": clients * jobs,
        "submit_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "submit_p99_ms": round(1000 * percentile(latencies, 99), 1) if latencies else None,
        "submit_max_ms": round(1000 * max(latencies), 1) if latencies else None,
        "errors": errors, "final_states": done_states,
        "all_done_s": round(wall, 2), "jobs_per_s": round(clients * jobs / wall, 2),
    }


async def sequential_run(port: int, slide: Path, count: int = 30) -> dict[str, object]:
    """One client, one call at a time: the latency of SubmitAnalysis without contention."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await channel.channel_ready()
        stub = pb_grpc.AnalysisServiceStub(channel)
        for i in range(count):
            started = time.perf_counter()
            await stub.SubmitAnalysis(request(slide, f"seq-{i}"), metadata=METADATA, timeout=30)
            latencies.append(time.perf_counter() - started)
    return {"submits": count, "submit_p50_ms": round(1000 * statistics.median(latencies), 2),
            "submit_p99_ms": round(1000 * percentile(latencies, 99), 2)}


async def burst_run(port: int, slide: Path, burst: int) -> dict[str, object]:
    outcomes: list[tuple[str, float]] = []

    async def one(i: int, stub: pb_grpc.AnalysisServiceStub) -> None:
        started = time.perf_counter()
        try:
            await stub.SubmitAnalysis(request(slide, f"burst-{i}"), metadata=METADATA, timeout=30)
            outcomes.append(("OK", time.perf_counter() - started))
        except grpc.aio.AioRpcError as exc:
            outcomes.append((exc.code().name, time.perf_counter() - started))

    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(burst)]
    for channel in channels:
        await channel.channel_ready()
    started = time.perf_counter()
    await asyncio.gather(*(one(i, pb_grpc.AnalysisServiceStub(c)) for i, c in enumerate(channels)))
    wall = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    rejected = [t for code, t in outcomes if code == "RESOURCE_EXHAUSTED"]
    counts: dict[str, int] = {}
    for code, _ in outcomes:
        counts[code] = counts.get(code, 0) + 1
    return {
        "burst": burst, "outcomes": counts, "burst_wall_ms": round(1000 * wall, 1),
        "rejection_p50_ms": round(1000 * statistics.median(rejected), 1) if rejected else None,
        "rejection_p99_ms": round(1000 * percentile(rejected, 99), 1) if rejected else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=1, help="jobs per client")
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--queue-limit", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grpc-load-") as tmp:
        root = Path(tmp)
        slide = write_slide(root / "slides")
        report: dict[str, object] = {}
        with serve(root, queue_limit=10_000, workers=1, idle_workers=True) as port:
            report["single_client"] = asyncio.run(sequential_run(port, slide))
        with serve(root, queue_limit=max(10_000, args.clients * args.jobs), workers=args.workers) \
                as port:
            report["concurrent_clients"] = asyncio.run(
                clients_run(port, slide, args.clients, args.jobs))
        with serve(root, queue_limit=args.queue_limit, workers=args.workers) as port:
            report["burst_vs_queue_limit"] = {"queue_limit": args.queue_limit,
                                              **asyncio.run(burst_run(port, slide, args.burst))}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
