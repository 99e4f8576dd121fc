"""The `parley` command as a user runs it: publish a file, and a whole short run on embedded parts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from schemas import topics
from schemas.channels import Channel
from tests.integration.conftest import Pipeline, read_topic
from tests.samples import encode, raw_message

pytestmark = pytest.mark.integration

PARLEY = [sys.executable, "-m", "services.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}}
    env = {k: v for k, v in env.items() if not k.startswith("PARLEY_")}
    return {**env, **extra}


async def test_publish_sends_every_line_of_a_file_to_the_channel_topic(pipeline: Pipeline, tmp_path: Path) -> None:
    feed = tmp_path / "app.jsonl"
    lines = [encode(raw_message(Channel.APP, "p1")), b"", b"not json at all", encode(raw_message(Channel.APP, "p2"))]
    feed.write_bytes(b"\n".join(lines) + b"\n")
    env = _env(KAFKA_BOOTSTRAP_SERVERS=pipeline.bootstrap_servers, PARLEY_KAFKA_TOPIC_PREFIX=pipeline.prefix)
    result = await asyncio.to_thread(
        subprocess.run,
        [*PARLEY, "publish", "--channel", "app", str(feed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Published 3 records" in result.stdout
    assert "1 blank lines skipped" in result.stdout
    assert "1 of them are not JSON objects" in result.stdout
    records = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.raw_topic(Channel.APP)), at_least=3)
    assert sorted(r.value for r in records) == sorted(line for line in lines if line)
    assert {r.key for r in records} == {b"C-p1", b"C-p2", None}


@pytest.mark.parametrize(
    ("arguments", "with_broker", "message"),
    [
        (["--channel", "fax", "x.jsonl"], True, "unknown channel 'fax'"),
        (["--channel", "app", "missing.jsonl"], True, "no such file"),
        (["--channel", "app", "x.jsonl"], False, "set KAFKA_BOOTSTRAP_SERVERS"),
    ],
)
def test_publish_refuses_clearly(arguments: list[str], with_broker: bool, message: str, tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text("{}\n")
    env = _env(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1") if with_broker else _env()
    result = subprocess.run(
        [*PARLEY, "publish", *arguments], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_run_on_embedded_parts_accounts_for_every_message_and_leaves_nothing_running(tmp_path: Path) -> None:
    env = _env(PARLEY_DATA_DIR=str(tmp_path / "state"))
    result = subprocess.run(
        [*PARLEY, "run", "--duration", "8", "--rate", "60", "--seed", "7", "--progress-interval", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Broker:   127.0.0.1:" in out
    assert "Database: postgresql://" in out
    assert "Every message accounted for: nothing lost, nothing doubled." in out, out
    assert "Throughput:" in out
    assert out.rstrip().endswith("Stopped; nothing left running.")
    for channel in Channel:
        assert f"  {channel.value:<10}" in out
    leftovers = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        try:
            if (process.info["environ"] or {}).get("PARLEY_DATA_DIR") == str(tmp_path / "state"):
                leftovers.append(process.info["cmdline"])
        except psutil.Error:
            continue
    assert leftovers == []
