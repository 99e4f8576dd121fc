"""Publishes simulated channel traffic at a given rate: the only place the simulator touches topics."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.channels import Channel
from services.runtime.settings import Settings
from services.simulator.logic import Flaw, Memory, SimulatedMessage, generate

CHANNEL_WEIGHTS = {
    Channel.HOTLINE: 30,
    Channel.APP: 30,
    Channel.SOCIAL: 15,
    Channel.BRANCH: 10,
    Channel.LETTER: 10,
    Channel.REGULATOR: 5,
}


@dataclass
class SimulatorStats:
    published: Counter[Channel] = field(default_factory=Counter)
    valid: Counter[Channel] = field(default_factory=Counter)
    """Distinct valid messages: each should become exactly one accepted event and one case."""
    duplicates: Counter[Channel] = field(default_factory=Counter)
    flawed: Counter[Flaw] = field(default_factory=Counter)
    flawed_by_channel: Counter[Channel] = field(default_factory=Counter)
    follow_ups: Counter[Channel] = field(default_factory=Counter)
    """Valid messages from a recent customer about the same theme, through this channel (should merge)."""
    post_updates: int = 0
    """Valid messages that are new reach figures of a recent social post (should update, not open, a case)."""

    @property
    def published_total(self) -> int:
        return sum(self.published.values())


async def simulate(
    producer: AIOKafkaProducer,
    settings: Settings,
    stats: SimulatorStats,
    stop: asyncio.Event,
    *,
    rate_per_second: float,
    malformed_share: float,
    duplicate_share: float,
    seed: int | None = None,
) -> None:
    """Publish until ``stop`` is set; every send is acknowledged before this returns."""
    rng = random.Random(seed)  # noqa: S311 - simulation, not security
    run_id = secrets.token_hex(4)  # not from the seed: a repeated seeded run must not look like retries
    channels, weights = list(CHANNEL_WEIGHTS), list(CHANNEL_WEIGHTS.values())
    recent: deque[SimulatedMessage] = deque(maxlen=200)
    memory = Memory()
    pending: list[asyncio.Future[object]] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    while not stop.is_set():
        due = int((loop.time() - started) * rate_per_second) - sent
        for _ in range(max(due, 0)):
            if recent and rng.random() < duplicate_share:
                message = rng.choice(recent)  # a channel system's retry: the same bytes again
                stats.duplicates[message.channel] += 1
            else:
                channel = rng.choices(channels, weights)[0]
                message = generate(
                    channel,
                    rng,
                    datetime.now(UTC),
                    sent,
                    malformed_share=malformed_share,
                    run_id=run_id,
                    memory=memory,
                )
                if message.flaw is None:
                    stats.valid[channel] += 1
                    recent.append(message)
                    if message.kind == "follow_up":
                        stats.follow_ups[channel] += 1
                    elif message.kind == "post_update":
                        stats.post_updates += 1
                else:
                    stats.flawed[message.flaw] += 1
                    stats.flawed_by_channel[channel] += 1
            pending.append(
                await producer.send(
                    settings.topic(topics.raw_topic(message.channel)), value=message.value, key=message.key
                )
            )
            stats.published[message.channel] += 1
            sent += 1
        if len(pending) > 1000:
            await asyncio.gather(*pending)
            pending.clear()
        await asyncio.sleep(0.02)
    await asyncio.gather(*pending)
