"""``parley plan FILE.json [--table]``: ranked plan proposals with their schedules for one request.

The file holds one request: a plan.requested event, its ``data``, or the same with conveniences for
a person writing it by hand: amounts as plain decimal strings with one top-level ``currency`` (by
default the jurisdiction's), ``request_id``/``case_id`` derived from the file when left out,
``requested_by`` "cli", ``as_of`` today, zero arrears, interest, penalty interest and fees, the
next due date a month after ``as_of`` and the contractual instalment the annuity of the remaining term.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import uuid
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.plans import PlanRequested
from services.planner.logic import PlanEngine, PlanRequestError
from services.planner.policy import load_policy
from services.planner.schedule import add_months, annuity_payment
from services.runtime.errors import describe_validation_error
from services.runtime.settings import Settings

CLI_NAMESPACE = uuid.UUID("2f7a9c41-6d0e-4b83-9e15-8c3b7a6d4e02")
CURRENCY_OF = {"CN": "CNY", "UK": "GBP", "US": "USD"}
DEBT_AMOUNTS = (
    "outstanding_principal",
    "arrears",
    "accrued_interest",
    "penalty_interest",
    "fees",
    "contractual_instalment",
)
INCOME_AMOUNTS = ("monthly_income", "essential_expenditure", "other_debt_payments", "savings_available")
ZERO_BY_DEFAULT = ("arrears", "accrued_interest", "penalty_interest", "fees")


def _usage_error(message: str) -> Exception:
    from services.cli import UsageError  # the caller's module, loaded by now

    return UsageError(message)


def register(commands: Any) -> None:
    """Add ``parley plan`` to the ``parley`` subcommands."""
    plan = commands.add_parser(
        "plan",
        help="ranked repayment and settlement plans, with schedules, for one request (a JSON file)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("file", help="one plan request as JSON (services/planner/examples/ has some)")
    plan.add_argument("--table", action="store_true", help="print the plans for a person instead of JSON")
    plan.set_defaults(handler=command_plan)


def command_plan(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise _usage_error(f"parley plan: no such file: {path}")
    raw = path.read_bytes()
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _usage_error(f"parley plan: {path}: not JSON: {exc}") from None
    today = datetime.now().astimezone().date()  # the person's own day, for a file that leaves as_of out
    request = read_request(document, raw, today=today, source=str(path))
    engine = PlanEngine(load_policy(Settings().plan_policy_path))
    try:
        data = engine.plan(request)
    except PlanRequestError as exc:
        raise _usage_error(f"parley plan: {path}: cannot plan for this request: {exc.detail}") from None
    if args.table:
        sys.stdout.write(render_table(request, data))
    else:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    return 0


def read_request(document: Any, raw: bytes, *, today: date, source: str) -> PlanRequested:
    """The request in ``document``, with the conveniences filled in; a usage error names every bad field."""
    if isinstance(document, dict) and "data" in document and "specversion" in document:
        document = document["data"]  # a whole plan.requested event
    if not isinstance(document, dict):
        raise _usage_error(f"parley plan: {source}: expected a JSON object with the request")
    request = dict(document)
    derived = uuid.uuid5(CLI_NAMESPACE, hashlib.sha256(raw).hexdigest())
    request.setdefault("request_id", str(derived))
    request.setdefault("case_id", str(derived))
    request.setdefault("requested_by", "cli")
    request.setdefault("as_of", today.isoformat())
    currency = request.pop("currency", None) or CURRENCY_OF.get(str(request.get("jurisdiction")), "CNY")
    debt = request.get("debt")
    if isinstance(debt, dict):
        debt = request["debt"] = dict(debt)
        for name in ZERO_BY_DEFAULT:
            debt.setdefault(name, "0.00")
        _fill_schedule_defaults(debt, request["as_of"])
        for name in DEBT_AMOUNTS:
            if name in debt:
                debt[name] = _money(debt[name], currency)
    income = request.get("income")
    if isinstance(income, dict):
        income = request["income"] = dict(income)
        for name in INCOME_AMOUNTS:
            if name in income:
                income[name] = _money(income[name], currency)
    if "preferred_instalment" in request:
        request["preferred_instalment"] = _money(request["preferred_instalment"], currency)
    try:
        return PlanRequested.model_validate(request)
    except ValidationError as exc:
        raise _usage_error(f"parley plan: {source}: {describe_validation_error(exc, limit=10)}") from None


def _money(value: Any, currency: str) -> Any:
    """A plain decimal string becomes Money in the file's currency; anything else is left for validation."""
    if isinstance(value, str):
        return {"amount": value, "currency": currency}
    return value


def _fill_schedule_defaults(debt: dict[str, Any], as_of: Any) -> None:
    if "next_due_date" not in debt and isinstance(as_of, str):
        with contextlib.suppress(ValueError):  # validation names a bad as_of
            debt["next_due_date"] = add_months(date.fromisoformat(as_of), 1).isoformat()
    if "contractual_instalment" in debt:
        return
    try:
        principal = Decimal(str(debt["outstanding_principal"]))
        rate = Decimal(str(debt["annual_rate"]))
        months = int(debt["remaining_term_months"])
    except (KeyError, TypeError, ValueError, InvalidOperation):
        return  # validation names what is missing or wrong
    if months > 0 and principal >= 0 and 0 <= rate <= 1:
        debt["contractual_instalment"] = format(annuity_payment(principal, rate, months), "f")
    else:
        debt["contractual_instalment"] = "0.00"


# ---- --table ----


def _amount(money: dict[str, str]) -> str:
    return f"{Decimal(money['amount']):,.2f}"


def render_table(request: PlanRequested, data: dict[str, Any]) -> str:
    debt = request.debt
    currency = debt.outstanding_principal.currency
    lines = [
        f"Plans for case {request.case_id} ({request.jurisdiction}, {debt.product}"
        + (f", {request.hardship_reason}" if request.hardship_reason else "")
        + f"), as of {request.as_of}",
        f"Owed {_amount(data['total_owed'])} {currency}: principal {debt.outstanding_principal.amount:,.2f}, "
        f"interest {debt.accrued_interest.amount:,.2f}, penalty interest {debt.penalty_interest.amount:,.2f}, "
        f"fees {debt.fees.amount:,.2f}; {debt.days_past_due} days past due",
        f"Monthly surplus {_amount(data['monthly_surplus'])}; "
        f"a plan's month may take {_amount(data['affordable_instalment'])}"
        + (" (household defaults filled the statement)" if data["surplus_from_defaults"] else ""),
        f"Expected recovery without a plan {_amount(data['expected_recovery_without_plan'])}; "
        f"policy {data['policy_version']}",
        "",
    ]
    if not data["proposals"]:
        lines += ["No plan is both affordable and allowed.", ""]
    for proposal in data["proposals"]:
        kinds = " + ".join(component["kind"] for component in proposal["components"])
        lines.append(
            f"#{proposal['rank']}  {kinds}: {_amount(proposal['instalment'])} a month at most, "
            f"{proposal['term_months']} instalments, approval: {proposal['approval_tier']}"
        )
        lines.append(
            f"    repays {_amount(proposal['total_repayable'])}; "
            f"expected value {_amount(proposal['net_present_value'])}; "
            f"loss vs contract {_amount(proposal['loss_vs_contract'])}; kept with chance "
            f"{proposal['keep_probability']:.0%}; {proposal['method']}, {proposal['day_count']}"
        )
        for component in proposal["components"]:
            lines.append(f"    - {component['description']}")
        lines.append(
            f"    {'no':>4}  {'due':<10}  {'payment':>12}  {'principal':>12}  {'interest':>10}  {'fees':>9}  "
            f"{'balance':>13}"
        )
        for row in proposal["schedule"]:
            lines.append(
                f"    {row['number']:>4}  {row['due_date']:<10}  {_amount(row['payment']):>12}  "
                f"{_amount(row['principal']):>12}  {_amount(row['interest']):>10}  {_amount(row['fees']):>9}  "
                f"{_amount(row['remaining_balance']):>13}"
            )
        lines.append("")
    if data["refused"]:
        lines.append("Not proposed:")
        for refused in data["refused"]:
            lines.append(f"  {refused['kind']}: {refused['reason']}")
    return "\n".join(lines) + "\n"
