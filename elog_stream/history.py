"""Reading the per-topic history that PUBLISH_SCRIPT keeps in Redis (docs/protocol.md)."""

from __future__ import annotations

import json
from typing import Any, cast

import redis.asyncio

from .protocol import Keys

MAX_ENTRIES = 1000


async def read_history(client: redis.asyncio.Redis, keys: Keys, topic: str) -> list[dict[str, Any]]:
    """Metadata of the topic's kept images, newest first (no image bytes)."""
    history = keys.history(topic)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hget(history, "first")
        pipe.hget(keys.topic(topic), "seq")
        first, last = await pipe.execute()
    if first is None or last is None:
        return []
    seqs = range(int(last), max(int(first), int(last) - MAX_ENTRIES + 1) - 1, -1)
    if not seqs:
        return []
    entries = await client.hmget(history, [f"meta:{seq}" for seq in seqs])
    return [
        {"topic": topic, "seq": seq, **json.loads(entry)}
        for seq, entry in zip(seqs, entries, strict=True)
        if entry is not None
    ]


async def read_history_image(
    client: redis.asyncio.Redis, keys: Keys, topic: str, seq: int
) -> tuple[dict[str, Any], bytes] | None:
    """Metadata and bytes of the image with sequence number ``seq``; None if not kept."""
    meta, data = await client.hmget(keys.history(topic), [f"meta:{seq}", f"image:{seq}"])
    if meta is None or data is None:
        return None
    return {"topic": topic, "seq": seq, **json.loads(meta)}, cast(bytes, data)
