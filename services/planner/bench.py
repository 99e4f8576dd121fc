"""Planner throughput on one core: ``python -m services.planner.bench`` (part of ``make bench``).

Each request is a plan.requested event as JSON bytes, as the processor receives it: parsed,
planned (every candidate with its full schedule), and the plan.proposed event serialised to JSON,
exactly as the processor does minus the broker and the database. The requests are a seeded mix of
products with realistic balances, rates, terms, arrears and statements. Prints requests per CPU
second (so other work on a shared core does not distort it), proposals and schedule rows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from schemas.plans import PlanRequested, PlanRequestedEvent, Product
from services.planner.app import plan_records
from services.planner.logic import PlanEngine
from services.planner.policy import load_policy
from services.planner.schedule import forget_calendars
from services.runtime.deadletter import InboundMessage
from services.runtime.settings import Settings

# product: share of requests, balance range (yuan), remaining term range (months), yearly rate range (bp)
MIX: dict[Product, tuple[float, tuple[int, int], tuple[int, int], tuple[int, int]]] = {
    Product.PERSONAL_LOAN: (0.35, (3_000, 300_000), (2, 36), (300, 2400)),
    Product.CREDIT_CARD: (0.30, (2_000, 150_000), (0, 0), (1000, 1800)),
    Product.BUSINESS_LOAN: (0.15, (50_000, 3_000_000), (3, 60), (350, 1200)),
    Product.CONSUMER_CREDIT: (0.10, (1_000, 80_000), (2, 24), (600, 2400)),
    Product.MORTGAGE: (0.10, (200_000, 3_000_000), (60, 300), (300, 550)),
}
PRODUCT_OF_REQUEST: dict[bytes, str] = {}
REASONS = ("illness", "job_loss", "business_downturn", "income_reduction", "family_event", "disaster", "other")


def _money(amount: Decimal) -> dict[str, str]:
    return {"amount": f"{amount:.2f}", "currency": "CNY"}


def sample_request(rng: random.Random, number: int) -> bytes:
    """One plan.requested event as the tracker would publish it (seeded: the same number, the same bytes)."""
    products = list(MIX)
    product = rng.choices(products, weights=[MIX[p][0] for p in products])[0]
    _, (low, high), (term_low, term_high), (rate_low, rate_high) = MIX[product]
    principal = Decimal(rng.randint(low * 100, high * 100)) / 100
    rate = Decimal(rng.randint(rate_low, rate_high)) / 10000
    term = rng.randint(term_low, term_high)
    monthly = rate / 12
    if term:
        growth = (1 + monthly) ** (term + 1)
        instalment = (principal * monthly * growth / (growth - 1)).quantize(Decimal("0.01"))
    else:
        instalment = (principal * Decimal("0.10")).quantize(Decimal("0.01"))  # a card's minimum payment
    missed = rng.choice((0, 1, 1, 2, 3, 4, 6))
    accrued = (principal * monthly * max(missed, 1)).quantize(Decimal("0.01"))
    arrears = min(instalment * missed, principal + accrued)
    penalty = (arrears * Decimal("0.015") * missed).quantize(Decimal("0.01"))
    fees = Decimal(rng.choice((0, 0, 50, 100, 200)))
    as_of = date(2026, 11, 22)
    income = (instalment * Decimal(rng.uniform(0.8, 3.5))).quantize(Decimal("0.01")) + Decimal(rng.randint(2000, 8000))
    statement: dict[str, object] = {"monthly_income": _money(income), "household_size": rng.randint(1, 5)}
    if rng.random() < 0.7:
        statement["essential_expenditure"] = _money(Decimal(rng.randint(1500, 6000)))
    if rng.random() < 0.5:
        statement["other_debt_payments"] = _money(Decimal(rng.randint(0, 2000)))
    if rng.random() < 0.3:
        statement["savings_available"] = _money((principal * Decimal(rng.uniform(0.1, 0.9))).quantize(Decimal("1")))
    case_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    data: dict[str, object] = {
        "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "case_id": str(case_id),
        "requested_by": "tracker",
        "jurisdiction": "CN",
        "hardship_reason": rng.choice(REASONS),
        "debt": {
            "product": product.value,
            "outstanding_principal": _money(principal),
            "arrears": _money(arrears),
            "accrued_interest": _money(accrued),
            "penalty_interest": _money(penalty),
            "fees": _money(fees),
            "annual_rate": str(rate),
            "remaining_term_months": term,
            "contractual_instalment": _money(instalment),
            "next_due_date": (as_of + timedelta(days=rng.randint(1, 28))).isoformat(),
            "days_past_due": missed * 30 + rng.randint(0, 29) if missed else 0,
        },
        "income": statement if rng.random() < 0.9 else None,
        "as_of": as_of.isoformat(),
    }
    if rng.random() < 0.3:
        data["preferred_instalment"] = _money((instalment * Decimal(rng.uniform(0.3, 0.9))).quantize(Decimal("1")))
    event = PlanRequestedEvent(
        id=uuid.UUID(int=number + 1, version=4),
        source="/parley/tracker",
        time=datetime(2026, 11, 22, 9, 30, tzinfo=UTC),
        subject=str(case_id),
        data=PlanRequested.model_validate(data),
    )
    return event.to_json_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.planner.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--requests", type=int, default=2000, help="distinct requests in the mix (default 2000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the figure claims
    engine = PlanEngine(load_policy(Settings().plan_policy_path))
    rng = random.Random(args.seed)  # noqa: S311 - a seeded mix, not a secret
    requests = [sample_request(rng, n) for n in range(args.requests)]
    PRODUCT_OF_REQUEST.update((raw, json.loads(raw)["data"]["debt"]["product"]) for raw in requests)
    now = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    messages = [(InboundMessage("plan.requested", 0, 0, None, raw, []), PRODUCT_OF_REQUEST[raw]) for raw in requests]
    # What a request yields, counted once, outside the timed loop.
    proposals = rows = 0
    for message, _ in messages:
        ((_, record),) = plan_records(engine, "plan.proposed", [message], now)
        data = json.loads(record.value)["data"]
        proposals += len(data["proposals"])
        rows += sum(len(proposal["schedule"]) for proposal in data["proposals"])
    done = 0
    per_product: Counter[str] = Counter()
    cpu_per_product: dict[str, float] = dict.fromkeys(PRODUCT_OF_REQUEST.values(), 0.0)
    wall_started = time.perf_counter()
    cpu_started = time.process_time()
    while time.perf_counter() - wall_started < args.seconds:
        for message, product in messages:
            forget_calendars()  # no help from the request before: each request pays for its own
            began = time.process_time()
            plan_records(engine, "plan.proposed", [message], now)
            cpu_per_product[product] += time.process_time() - began
            per_product[product] += 1
            done += 1
            if done % 100 == 0 and time.perf_counter() - wall_started >= args.seconds:
                break
    cpu = time.process_time() - cpu_started
    wall = time.perf_counter() - wall_started
    out = sys.stdout
    out.write(
        f"planner: {done / cpu:,.0f} requests per CPU second on one core ({done:,} requests in {cpu:.1f} s CPU, "
        f"{wall:.1f} s wall); {proposals / len(messages):.1f} proposals and {rows / len(messages):,.0f} schedule "
        "rows a request, every proposal with its full schedule\n"
    )
    for product in sorted(per_product, key=per_product.__getitem__, reverse=True):
        rate = per_product[product] / cpu_per_product[product] if cpu_per_product[product] else 0.0
        out.write(f"  {product:<16} {rate:>8,.0f} requests/s ({per_product[product]:,} requests)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
