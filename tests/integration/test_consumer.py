"""The batch consumer through the embedded broker: order, commits, stops and rebalances."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

from aiokafka import AIOKafkaProducer

from services.runtime.consumer import BatchConsumer, Handler
from services.runtime.deadletter import InboundMessage
from services.runtime.kafka import ensure_topics
from services.runtime.settings import Settings

PARTITIONS = 4


def _settings() -> Settings:
    return Settings(
        kafka_bootstrap_servers="unused:1",  # configured, so the short test session and fetch wait below apply
        kafka_partitions=PARTITIONS,
        kafka_session_timeout_seconds=2.0,
        kafka_heartbeat_interval_seconds=0.5,
        kafka_fetch_max_wait_ms=100,
        batch_max_records=50,
    )


async def _direct(messages: list[InboundMessage], handler: Handler) -> None:
    await handler(messages)


class Recorder:
    """A handler that remembers what it saw, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int, bytes]]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.entered = asyncio.Event()

    async def __call__(self, messages: list[InboundMessage]) -> None:
        self.entered.set()
        await self.release.wait()
        self.batches.append([(m.partition, m.offset, m.value) for m in messages])

    @property
    def values(self) -> list[bytes]:
        return [value for batch in self.batches for _, _, value in batch]


async def _publish(producer: AIOKafkaProducer, topic: str, count: int, start: int = 0) -> list[bytes]:
    values = [f"r{n}".encode() for n in range(start, start + count)]
    sends = [await producer.send(topic, value, key=str(n % 17).encode()) for n, value in enumerate(values)]
    await asyncio.gather(*sends)
    return values


async def _until(condition: object, timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


class Member:
    def __init__(self, bootstrap_servers: str, group: str, topic: str, handler: Handler) -> None:
        self.consumer = BatchConsumer(_settings(), bootstrap_servers, group, {topic: handler}, _direct)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Member:
        await self.consumer.start()
        self.task = asyncio.ensure_future(self.consumer.run())
        return self

    async def stop(self, grace_seconds: float = 5.0) -> None:
        await self.consumer.stop(grace_seconds, self.task)


async def _topic(bootstrap_servers: str) -> str:
    topic = f"consumer-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(_settings(), bootstrap_servers, [topic])
    return topic


async def test_every_record_once_in_partition_order_and_committed(
    bootstrap_servers: str, producer: AIOKafkaProducer
) -> None:
    topic, group = await _topic(bootstrap_servers), f"g-{uuid.uuid4().hex[:8]}"
    sent = await _publish(producer, topic, 600)
    recorder = Recorder()
    member = await Member(bootstrap_servers, group, topic, recorder).start()
    await _until(lambda: len(recorder.values) >= len(sent))
    await _until(lambda: sum(member.consumer.committed.values()) == len(sent))
    await member.stop()

    assert sorted(recorder.values) == sorted(sent)
    assert max(len(batch) for batch in recorder.batches) <= 50
    offsets: dict[int, list[int]] = defaultdict(list)
    for batch in recorder.batches:
        for partition, offset, _ in batch:
            offsets[partition].append(offset)
    assert all(seen == sorted(seen) for seen in offsets.values())
    print(f"consumer: {len(sent)} records in {len(recorder.batches)} batches over {len(offsets)} partitions")

    # What was committed is not read again by the group's next member.
    more = await _publish(producer, topic, 40, start=600)
    after = Recorder()
    member = await Member(bootstrap_servers, group, topic, after).start()
    await _until(lambda: len(after.values) >= len(more))
    await asyncio.sleep(0.5)
    await member.stop()
    assert sorted(after.values) == sorted(more)


async def test_a_batch_not_finished_by_the_stop_is_read_again(
    bootstrap_servers: str, producer: AIOKafkaProducer
) -> None:
    topic, group = await _topic(bootstrap_servers), f"g-{uuid.uuid4().hex[:8]}"
    sent = await _publish(producer, topic, 30)
    stuck = Recorder()
    stuck.release.clear()  # the handler never returns: its batch stays uncommitted
    member = await Member(bootstrap_servers, group, topic, stuck).start()
    await asyncio.wait_for(stuck.entered.wait(), 30)
    await member.stop(grace_seconds=0.2)
    assert stuck.values == []
    assert member.consumer.committed == {}

    again = Recorder()
    member = await Member(bootstrap_servers, group, topic, again).start()
    await _until(lambda: len(again.values) >= len(sent))
    await member.stop()
    assert sorted(again.values) == sorted(sent)


async def test_a_second_member_takes_partitions_over_without_loss(
    bootstrap_servers: str, producer: AIOKafkaProducer
) -> None:
    topic, group = await _topic(bootstrap_servers), f"g-{uuid.uuid4().hex[:8]}"
    first_seen, second_seen = Recorder(), Recorder()
    first = await Member(bootstrap_servers, group, topic, first_seen).start()
    sent = await _publish(producer, topic, 300)
    await _until(lambda: len(first_seen.values) >= 100)
    second = await Member(bootstrap_servers, group, topic, second_seen).start()
    sent += await _publish(producer, topic, 300, start=300)
    await _until(lambda: first.consumer.assigned and second.consumer.assigned)
    sent += await _publish(producer, topic, 300, start=600)
    await _until(lambda: set(first_seen.values) | set(second_seen.values) >= set(sent))
    await second.stop()
    await first.stop()

    both = first_seen.values + second_seen.values
    assert set(both) == set(sent)
    assert first.consumer.assigned.isdisjoint(second.consumer.assigned)
    assert len(first.consumer.assigned | second.consumer.assigned) == PARTITIONS
    # The member giving partitions up finished and committed its batch first, and dropped what it had fetched
    # beyond it: nothing was read twice.
    repeats = len(both) - len(set(both))
    print(f"consumer rebalance: {len(sent)} records, {repeats} read twice across the hand-over")
    assert repeats == 0
