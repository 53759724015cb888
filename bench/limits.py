"""L1: the best POST rate a bare Python httpx client reaches against the benchmark's nginx."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass

import httpx

WARMUP_REQUESTS = 200


@dataclass(frozen=True)
class ClientJob:
    """One client process's share of an L1 measurement."""

    url: str
    body: bytes
    mode: str  # "sync" (threads sharing one httpx.Client) or "async" (one AsyncClient)
    concurrency: int  # threads, or requests in flight
    start_at: float  # wall-clock time to begin, so every process measures the same window
    duration_s: float


def _headers() -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Sol-Delivery": str(uuid.uuid4())}


def _run_sync(job: ClientJob) -> int:
    limits = httpx.Limits(
        max_connections=job.concurrency, max_keepalive_connections=job.concurrency
    )
    with httpx.Client(limits=limits, trust_env=False) as client:
        for _ in range(WARMUP_REQUESTS // job.concurrency + 1):
            client.post(job.url, content=job.body, headers=_headers())
        counts = [0] * job.concurrency
        end_at = job.start_at + job.duration_s

        def loop(slot: int) -> None:
            while time.time() < end_at:
                if client.post(job.url, content=job.body, headers=_headers()).status_code == 204:
                    counts[slot] += 1

        time.sleep(max(0.0, job.start_at - time.time()))
        threads = [threading.Thread(target=loop, args=(slot,)) for slot in range(job.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts)


async def _run_async(job: ClientJob) -> int:
    limits = httpx.Limits(
        max_connections=job.concurrency, max_keepalive_connections=job.concurrency
    )
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
        for _ in range(WARMUP_REQUESTS // job.concurrency + 1):
            await client.post(job.url, content=job.body, headers=_headers())
        end_at = job.start_at + job.duration_s

        async def loop() -> int:
            done = 0
            while time.time() < end_at:
                response = await client.post(job.url, content=job.body, headers=_headers())
                if response.status_code == 204:
                    done += 1
            return done

        await asyncio.sleep(max(0.0, job.start_at - time.time()))
        return sum(await asyncio.gather(*(loop() for _ in range(job.concurrency))))


def run_client(job: ClientJob) -> int:
    """Post as fast as `job` allows during its window; return the number of 204 answers."""
    if job.mode == "sync":
        return _run_sync(job)
    return asyncio.run(_run_async(job))


@dataclass(frozen=True)
class ClientShape:
    """A way to drive the bare client: mode, concurrency per process, and processes."""

    name: str
    mode: str
    concurrency: int
    processes: int


# The shapes tried for L1; the best one is the limit. The sync shape is the one the workers use.
CLIENT_SHAPES = (
    ClientShape("sync httpx, 16 threads, 1 process", "sync", 16, 1),
    ClientShape("sync httpx, 8 threads, 2 processes", "sync", 8, 2),
    ClientShape("async httpx, 4 in flight, 1 process", "async", 4, 1),
    ClientShape("async httpx, 4 in flight, 2 processes", "async", 4, 2),
)


def measure_shape(
    pool: Executor, shape: ClientShape, url: str, body: bytes, duration_s: float
) -> float:
    """Return the POST rate of `shape` against `url`, in requests per second.

    Args:
        pool: an executor with at least `shape.processes` worker processes.
        shape: how to drive the client.
        url: the receiver's URL.
        body: the request body, the size of a real handoff.
        duration_s: the length of the measured window, after each process's warm-up.
    """
    start_at = time.time() + 1.5  # room for every process to connect and warm up
    futures = [
        pool.submit(
            run_client,
            ClientJob(
                url=url,
                body=body,
                mode=shape.mode,
                concurrency=shape.concurrency,
                start_at=start_at,
                duration_s=duration_s,
            ),
        )
        for _ in range(shape.processes)
    ]
    return sum(future.result() for future in futures) / duration_s
