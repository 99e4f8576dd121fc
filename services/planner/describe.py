"""Plan components in words an agent reads to a customer: Chinese for CN cases, English elsewhere."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from schemas.values import Jurisdiction
from services.planner.schedule import Grace


class Describer:
    """Sentences for one request's plans: its language and currency."""

    def __init__(self, jurisdiction: Jurisdiction, currency: str) -> None:
        self.chinese = jurisdiction is Jurisdiction.CN
        self.currency = currency

    def money(self, amount: Decimal) -> str:
        if self.chinese and self.currency == "CNY":
            return f"{amount:,.2f}元"
        return f"{self.currency} {amount:,.2f}"

    @staticmethod
    def rate(rate: Decimal) -> str:
        return f"{rate * 100:.2f}%"

    @staticmethod
    def day(value: date) -> str:
        return value.isoformat()

    def promise_to_pay(self, amount: Decimal, dates: list[date]) -> str:
        listed = ", ".join(self.day(d) for d in dates)
        if self.chinese:
            return (
                f"承诺分{len(dates)}次（{listed}）还清逾期款项共{self.money(amount)}，履约期间暂停催收，原合同照常履行"
            )
        return (
            f"Pay the arrears of {self.money(amount)} in {len(dates)} payment(s) ({listed}); collection pauses "
            "while the promise is kept and the contract then continues unchanged"
        )

    def capitalise_arrears(self, interest: Decimal, charges_left: Decimal, spread: int) -> str:
        if self.chinese:
            text = f"逾期本息重新安排：应计利息{self.money(interest)}并入本金，账户恢复正常（重新计算账龄）"
            if charges_left:
                text += f"；未减免的罚息及费用{self.money(charges_left)}分{spread}期随还款收取，不计利息"
            return text
        text = (
            f"The arrears are rescheduled: accrued interest of {self.money(interest)} is added to the principal "
            "and the account is brought up to date (re-aged)"
        )
        if charges_left:
            text += (
                f"; penalty interest and fees left ({self.money(charges_left)}) are collected over "
                f"{spread} instalments without interest"
            )
        return text

    def fee_waiver(self, penalty_waived: Decimal, fees_waived: Decimal, share: Decimal) -> str:
        whole = share >= 1
        if self.chinese:
            extent = "全额" if whole else f"减免{share * 100:.0f}%"
            return f"免除罚息{self.money(penalty_waived)}及费用{self.money(fees_waived)}（{extent}）"
        extent = "all of them" if whole else f"{share * 100:.0f}% of them"
        return (
            f"Waive {self.money(penalty_waived)} of penalty interest and {self.money(fees_waived)} of fees ({extent})"
        )

    def deferral(self, months: int, grace: Grace, first: date, deferred_interest: Decimal, spread: int) -> str:
        if self.chinese:
            if grace is Grace.PRINCIPAL:
                return f"自{self.day(first)}起{months}个月只还利息、暂不还本金"
            return (
                f"自{self.day(first)}起暂停还本付息{months}个月；期间利息{self.money(deferred_interest)}"
                f"不计复利，于其后{spread}期分摊收取"
            )
        if grace is Grace.PRINCIPAL:
            return f"For {months} months from {self.day(first)} only interest is paid, no principal"
        return (
            f"No payments for {months} months from {self.day(first)}; their interest of "
            f"{self.money(deferred_interest)} bears no interest and is collected over the next {spread} instalments"
        )

    def term_extension(self, from_months: int, to_months: int, last_due: date) -> str:
        if self.chinese:
            return f"剩余期限由{from_months}个月延长至{to_months}个月，最后一期{self.day(last_due)}"
        return f"The remaining term goes from {from_months} to {to_months} months; last instalment {self.day(last_due)}"

    def card_instalment(self, balance: Decimal, months: int, rate: Decimal, monthly_fee: Decimal) -> str:
        if self.chinese:
            interest = "停止计息" if rate == 0 else f"年化利率{self.rate(rate)}"
            fee = f"，每期手续费{self.money(monthly_fee)}" if monthly_fee else "，不收手续费"
            return f"信用卡欠款{self.money(balance)}办理个性化分期，分{months}期偿还，{interest}{fee}"
        interest = "no interest" if rate == 0 else f"interest at {self.rate(rate)} a year"
        fee = f", a fee of {self.money(monthly_fee)} an instalment" if monthly_fee else ", no fees"
        return f"A personalised instalment plan for the card debt of {self.money(balance)} over {months} months, " + (
            f"{interest}{fee}"
        )

    def rate_reduction(self, old: Decimal, new: Decimal, step_up_after: int) -> str:
        if self.chinese:
            text = f"年化利率由{self.rate(old)}下调至{self.rate(new)}"
            if step_up_after:
                text += f"，{step_up_after}期后恢复至{self.rate(old)}"
            return text
        text = f"The yearly rate goes down from {self.rate(old)} to {self.rate(new)}"
        if step_up_after:
            text += f", back to {self.rate(old)} after {step_up_after} instalments"
        return text

    def settlement_lump_sum(self, amount: Decimal, due: date, forgiven: Decimal) -> str:
        if self.chinese:
            return f"于{self.day(due)}前一次性还款{self.money(amount)}结清全部欠款，减免{self.money(forgiven)}"
        return (
            f"Settle the whole debt with one payment of {self.money(amount)} by {self.day(due)}; "
            f"{self.money(forgiven)} forgiven"
        )

    def settlement_instalments(self, amount: Decimal, count: int, forgiven: Decimal) -> str:
        if self.chinese:
            return f"分{count}期共还款{self.money(amount)}结清全部欠款，减免{self.money(forgiven)}"
        return (
            f"Settle the whole debt with {self.money(amount)} paid over {count} months; {self.money(forgiven)} forgiven"
        )
