"""``kaspro ledger check``: the books must balance, from the entries up."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, case, func, select

from storage.schema import accounts, customers, entries, movements
from wallet.clock import Clock, month_key
from wallet.ledger import Limits
from wallet.model import State, Tier


@dataclass
class CheckReport:
    movements: int = 0
    accounts: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        head = f"checked {self.movements} movements, {self.accounts} accounts: "
        if self.ok:
            return head + "ledger is clean"
        lines = [head + f"{len(self.problems)} problem(s)"]
        lines += [f"  - {p}" for p in self.problems[:200]]
        if len(self.problems) > 200:
            lines.append(f"  … and {len(self.problems) - 200} more")
        return "\n".join(lines)


def check_ledger(conn: Connection, limits: Limits, clock: Clock) -> CheckReport:
    report = CheckReport()
    p = report.problems
    report.movements = int(conn.scalar(select(func.count()).select_from(movements)) or 0)
    report.accounts = int(conn.scalar(select(func.count()).select_from(accounts)) or 0)

    # 1. every movement's entries sum to zero, and it has entries
    sums = (
        select(entries.c.movement_id, func.sum(entries.c.amount).label("s"))
        .group_by(entries.c.movement_id)
        .subquery()
    )
    for mid, ref, s in conn.execute(
        select(movements.c.id, movements.c.ref, sums.c.s)
        .select_from(movements.outerjoin(sums, sums.c.movement_id == movements.c.id))
        .where((sums.c.s.is_(None)) | (sums.c.s != 0))
    ):
        p.append(f"movement {mid} ({ref}): entries sum to {s if s is not None else 'nothing'}")

    # 2. each account's stored numbers equal what its entries say
    posted = func.coalesce(
        func.sum(case((movements.c.state == State.POSTED.value, entries.c.amount), else_=0)), 0
    )
    pend_debit = func.coalesce(
        func.sum(
            case(
                (
                    and_(movements.c.state == State.PENDING.value, entries.c.amount < 0),
                    -entries.c.amount,
                ),
                else_=0,
            )
        ),
        0,
    )
    pend_credit = func.coalesce(
        func.sum(
            case(
                (
                    and_(movements.c.state == State.PENDING.value, entries.c.amount > 0),
                    entries.c.amount,
                ),
                else_=0,
            )
        ),
        0,
    )
    month = month_key(clock.now())
    usage = func.coalesce(
        func.sum(
            case(
                (
                    and_(
                        movements.c.state != State.VOIDED.value,
                        movements.c.usage_month == month,
                    ),
                    func.abs(entries.c.amount),
                ),
                else_=0,
            )
        ),
        0,
    )
    per_account = (
        select(
            entries.c.account_id,
            posted.label("posted"),
            pend_debit.label("pd"),
            pend_credit.label("pc"),
            usage.label("usage"),
        )
        .select_from(entries.join(movements, movements.c.id == entries.c.movement_id))
        .group_by(entries.c.account_id)
        .subquery()
    )
    rows = conn.execute(
        select(
            accounts.c.id,
            accounts.c.code,
            accounts.c.customer_id,
            accounts.c.balance,
            accounts.c.debits_pending,
            accounts.c.credits_pending,
            accounts.c.usage_month,
            accounts.c.usage_amount,
            customers.c.tier,
            func.coalesce(per_account.c.posted, 0),
            func.coalesce(per_account.c.pd, 0),
            func.coalesce(per_account.c.pc, 0),
            func.coalesce(per_account.c.usage, 0),
        ).select_from(
            accounts.outerjoin(per_account, per_account.c.account_id == accounts.c.id).outerjoin(
                customers, customers.c.id == accounts.c.customer_id
            )
        )
    )
    total = 0
    for _id, code, customer_id, bal, dp, cp, um, ua, tier, e_bal, e_dp, e_cp, e_use in rows:
        total += bal
        if bal != e_bal:
            p.append(f"{code}: balance {bal} but entries say {e_bal}")
        if dp != e_dp or cp != e_cp:
            p.append(f"{code}: pending -{dp}/+{cp} but holds say -{e_dp}/+{e_cp}")
        if customer_id is None:
            continue
        if bal - dp < 0:
            p.append(f"{code}: available balance {bal - dp} is below zero")
        cap = limits.balance_cap[Tier(tier)]
        if bal + cp > cap:
            p.append(f"{code}: balance {bal} + incoming holds {cp} exceed the {tier} cap {cap}")
        used = ua if um == month else 0
        if used != e_use:
            p.append(f"{code}: month-to-date use {used} but movements say {e_use}")
        monthly = limits.monthly_cap[Tier(tier)]
        if e_use > monthly:
            p.append(f"{code}: month-to-date use {e_use} exceeds the {tier} monthly cap {monthly}")
    if total != 0:
        p.append(f"the books do not balance: all accounts sum to {total}, not 0")

    # 3. no hold outlives its expiry
    for mid, ref, exp in conn.execute(
        select(movements.c.id, movements.c.ref, movements.c.expires_at)
        .where(movements.c.state == State.PENDING.value)
        .where(movements.c.expires_at <= clock.now())
    ):
        p.append(f"movement {mid} ({ref}): hold expired at {exp} but is still pending")
    return report
