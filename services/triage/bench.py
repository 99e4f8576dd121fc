"""Triage throughput on one core: ``python -m services.triage.bench`` (part of ``make bench``).

Texts of about 200 characters, built from the training data, each masked and triaged with its
reasons, exactly as the processor does (minus the broker). Prints texts per second.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from schemas.channels import Channel
from services.privacy.logic import mask
from services.triage.logic import Triage
from services.triage.train import load_training_rows

TARGET_LENGTH = 200


def bench_texts(count: int) -> list[tuple[str, Channel]]:
    rows = load_training_rows()
    texts: list[tuple[str, Channel]] = []
    index = 0
    while len(texts) < count:
        text = ""
        channel = Channel(rows[index % len(rows)]["channel"])
        while len(text) < TARGET_LENGTH:
            text += rows[index % len(rows)]["text"]
            index += 1
        texts.append((text[:TARGET_LENGTH], channel))
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.triage.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the figure claims
    triage = Triage.shipped()
    texts = bench_texts(2000)
    key = b"bench"
    masked = [(mask(text, key).text, channel) for text, channel in texts]
    for text, channel in masked[:200]:  # warm caches
        triage.assess(text, channel)
    mean_length = sum(len(text) for text, _ in texts) / len(texts)
    batch = 500  # what the processor takes at most from the broker at once (PARLEY_BATCH_MAX_RECORDS)
    runs = (("triage processor (the text arrives masked)", False), ("mask + triage (parley triage)", True))
    for label, with_masking in runs:
        done = reasons = 0
        started, cpu_started = time.perf_counter(), time.process_time()
        while time.perf_counter() - started < args.seconds:
            for first in range(0, len(texts), batch):
                chunk = texts[first : first + batch]
                if with_masking:
                    items = [(mask(text, key).text, channel, None) for text, channel in chunk]
                else:
                    items = [(text, channel, None) for text, channel in masked[first : first + batch]]
                reasons += sum(len(result.reasons) for result in triage.assess_many(items))
            done += len(texts)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        # Per CPU second is the one-core figure even when other work shares the core; wall time is shown too.
        print(
            f"{label}: {done / cpu:,.0f} texts per CPU second on one core ({done / elapsed:,.0f}/s wall), "
            f"batches of {batch} ({reasons / done:.1f} reasons per text, mean {mean_length:.0f} characters, "
            f"{done:,} texts in {elapsed:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
