"""What the library costs above the transport: ``accept_call`` with the HTTP attempt stubbed
out (a canned 200), in-process, best of five loops. Run as a file
(``python benchmarks/_overhead.py``) so that it measures whichever d360calling is on
``PYTHONPATH``: ``python -m benchmarks.ab`` runs it against two trees.

It reaches into the client (``_transport.send``); that is the point: everything above that call
is ours, and without the network it is quiet enough to compare two revisions."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from d360calling import AsyncClient
from d360calling._transport import RawResponse
from d360calling.testing import sample_answer

__all__ = ("main",)

LOOPS, CALLS = 5, 20_000


async def _measure() -> float:
    client = AsyncClient(api_key="bench-key-0123", base_url="http://127.0.0.1:9")
    answer = RawResponse(
        status=200,
        headers=CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"})),
        body=b'{"messaging_product":"whatsapp","success":true}',
        method="POST",
        path="/calling/calls",
        elapsed=0.0,
    )

    async def send(*args: Any, **kwargs: Any) -> RawResponse:
        return answer

    client._transport.send = send  # type: ignore[method-assign]
    sdp = sample_answer()
    best = float("inf")
    for _ in range(LOOPS):
        started = time.perf_counter()
        for _ in range(CALLS):
            await client.accept_call("wacid.ABC", sdp)
        best = min(best, (time.perf_counter() - started) / CALLS)
    await client.aclose()
    return best * 1e6


def main() -> None:
    cpu = os.environ.get("BENCH_CPU")  # the core python -m benchmarks.ab gives the client
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    print(json.dumps({"us": asyncio.run(_measure())}))


if __name__ == "__main__":
    main()
