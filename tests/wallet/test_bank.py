"""A Jepsen-style bank test: many concurrent clients moving money among a few wallets.

16 workers run 5,000 random operations among 8 Premium wallets — posted transfers,
holds later posted or voided, and replays of earlier requests with the same key — while
the books must stay exact: total money conserved, no available balance below zero, caps
held, and ``kaspro ledger check`` clean at the end.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys

from sqlalchemy import func, select

from storage.schema import movements
from tests.conftest import Env
from tests.wallet.helpers import new_customer, topup
from wallet.check import check_ledger
from wallet.errors import InsufficientFunds, InvalidTransition, LimitError
from wallet.model import CustomerParty, Kind, Movement, MoveMoney, State, Tier

WALLETS = 8
WORKERS = 16
OPERATIONS = 5_000
START_BALANCE = 3_000_000


async def test_bank_under_concurrency(env: Env) -> None:
    ids = [await new_customer(env.wallet, tier=Tier.PREMIUM) for _ in range(WALLETS)]
    for cid in ids:
        await topup(env.wallet, cid, START_BALANCE)
    total = WALLETS * START_BALANCE
    rng = random.Random(20261204)
    plan = [
        (
            i,
            *rng.sample(ids, 2),
            rng.choice([1_000, 5_000, 10_000, 25_000, 50_000] * 20 + [2_500_000]),
            rng.random(),
        )
        for i in range(OPERATIONS)
    ]
    queue: asyncio.Queue[tuple[int, int, int, int, float]] = asyncio.Queue()
    for op in plan:
        queue.put_nowait(op)
    done: list[Movement] = []
    stats = {"posted": 0, "held": 0, "voided": 0, "replayed": 0, "refused": 0}

    async def worker() -> None:
        while True:
            try:
                i, src, dst, amount, roll = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            cmd = MoveMoney(
                key=f"bank-{i}",
                kind=Kind.TRANSFER,
                source=CustomerParty(src),
                destination=CustomerParty(dst),
                amount=amount,
                hold=roll < 0.3,
                actor=f"worker:{i % WORKERS}",
            )
            try:
                m = await env.wallet.move(cmd)
            except (LimitError, InsufficientFunds):
                stats["refused"] += 1
                continue
            done.append(m)
            if m.state is State.PENDING:
                stats["held"] += 1
                try:
                    if roll < 0.2:
                        await env.wallet.post(m.id, actor="worker")
                    else:
                        await env.wallet.void(m.id, actor="worker")
                        stats["voided"] += 1
                except InvalidTransition:
                    pass
            else:
                stats["posted"] += 1
            if roll > 0.9 and done:  # a client retrying an earlier request
                old = rng.choice(done)
                again = await env.wallet.move(
                    MoveMoney(
                        key=old.key,
                        kind=Kind.TRANSFER,
                        source=CustomerParty(old.debit_customer_id or 0),
                        destination=CustomerParty(old.credit_customer_id or 0),
                        amount=old.amount,
                        hold=old.expires_at is not None,
                        actor="retry",
                    )
                )
                assert again.id == old.id and again.replayed
                stats["replayed"] += 1

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(WORKERS))), timeout=300)

    balances = [await env.wallet.balance(cid) for cid in ids]
    assert sum(b.balance for b in balances) == total, "money was created or destroyed"
    for b in balances:
        assert b.available >= 0 and b.pending_debits == 0 and b.pending_credits == 0
        assert b.balance <= b.balance_cap
        assert b.month_used <= b.monthly_cap
    report = await env.db.read(check_ledger, env.wallet.ledger.limits, env.clock)
    n = await env.db.read(
        lambda c: c.scalar(
            select(func.count())
            .select_from(movements)
            .where(movements.c.kind == Kind.TRANSFER.value)
        )
    )
    assert report.ok, report.render()
    assert n == len(done)  # replays added nothing
    assert stats["posted"] > 2_500 and stats["held"] > 1_000 and stats["replayed"] > 300, stats
    assert stats["refused"] > 0, stats  # big amounts sometimes hit a limit

    # The operator's command agrees.
    cli = subprocess.run(  # noqa: ASYNC221 - the loop has nothing else to do now
        [sys.executable, "-m", "bot.cli", "--database-url", env.url, "ledger", "check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "ledger is clean" in cli.stdout
