"""Readiness and drain with real clients mid-conversation: /live, /ready, /admin/drain."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from kamevoice.runtime.messages import EndCause
from kamevoice.server.client import ChatClient, Rejected
from tests.server.conftest import running_server

FRAME = np.zeros(1920, dtype=np.float32)


async def _get(url: str, **kw) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.request(kw.pop("method", "GET"), url, **kw) as resp:
        return resp.status, await resp.json()


async def _text(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return await resp.text()


async def _talk(client: ChatClient, frames: int) -> None:
    for _ in range(frames):
        if client.got.closed:
            return
        await client.send_frame(FRAME)
        await asyncio.sleep(0.08)


def test_ready_full_and_drain(frontend):
    async def main():
        async with running_server(frontend, max_sessions=1, admin_token="s3cret", drain_timeout_s=1.5) as (
            _srv,
            url,
        ):
            assert (await _get(url + "/live"))[0] == 200
            assert await _get(url + "/ready") == (200, {"ready": True, "reason": None})
            status, _ = await _get(url + "/admin/drain", method="POST")
            assert status == 401  # no token: refused
            async with ChatClient.connect(url, pcm16=True) as client:
                assert await _get(url + "/ready") == (503, {"ready": False, "reason": "full"})
                status, _ = await _get(
                    url + "/admin/drain", method="POST", headers={"Authorization": "Bearer s3cret"}
                )
                assert status == 200
                assert (await _get(url + "/ready"))[1]["reason"] == "draining"
                await _talk(client, 8)  # shorter than the drain timeout: not cut
                assert not client.got.closed
                metrics = await _text(url + "/metrics")
                assert "kamevoice_draining 1.0" in metrics
                assert "kamevoice_capacity_used_ratio 1.0" in metrics
                await _talk(client, 40)  # outlives the timeout: ended with the drain's cause
                assert await client.wait_for(lambda c: c.got.closed, timeout=20)
                await asyncio.sleep(0.5)
                assert f'kamevoice_sessions_ended_total{{reason="{EndCause.DRAIN}"}} 1.0' in await _text(
                    url + "/metrics"
                )
            with pytest.raises(Rejected) as refused:
                async with ChatClient.connect(url, pcm16=True):
                    pass
            assert refused.value.status == 503

    asyncio.run(main())
