"""The ledger's rules, each as a customer or operator would see it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from storage.schema import accounts, audit_log, entries, movements
from tests.conftest import Env
from tests.wallet.helpers import (
    BILLER,
    MERCHANT,
    VA_BCA,
    key,
    new_customer,
    pay_merchant,
    send,
    topup,
)
from wallet.check import check_ledger
from wallet.errors import (
    AccountNotActive,
    BalanceCapExceeded,
    CustomerNotFound,
    HoldExpired,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidTransition,
    MonthlyLimitExceeded,
    TierNotAllowed,
    ValidationFailed,
)
from wallet.model import (
    FEE_INCOME,
    CustomerParty,
    Kind,
    MoveMoney,
    State,
    Status,
    SystemKind,
    SystemParty,
    Tier,
)


async def assert_clean(env: Env) -> None:
    report = await env.db.read(check_ledger, env.wallet.ledger.limits, env.clock)
    assert report.ok, report.render()


async def test_topup_posts_balanced_entries_and_credits_the_wallet(env: Env) -> None:
    cid = await new_customer(env.wallet)
    m = await topup(env.wallet, cid, 150_000)
    assert m.state is State.POSTED and m.amount == 150_000 and m.ref.startswith("KP")
    bal = await env.wallet.balance(cid)
    assert (bal.balance, bal.available, bal.month_used) == (150_000, 150_000, 150_000)
    rows = await env.db.read(
        lambda c: c.execute(select(entries.c.amount).where(entries.c.movement_id == m.id)).all()
    )
    assert sorted(r[0] for r in rows) == [-150_000, 150_000]
    assert await env.db.read(env.wallet.ledger.system_balance, VA_BCA) == -150_000
    await assert_clean(env)


async def test_regular_balance_cap_refuses_with_room_left(env: Env) -> None:
    cid = await new_customer(env.wallet)
    await topup(env.wallet, cid, 1_500_000)
    with pytest.raises(BalanceCapExceeded) as err:
        await topup(env.wallet, cid, 600_000)
    assert err.value.cap == 2_000_000 and err.value.room == 500_000
    await topup(env.wallet, cid, 500_000)  # exactly to the cap is fine
    assert (await env.wallet.balance(cid)).balance == 2_000_000
    await assert_clean(env)


async def test_premium_cap_is_twenty_million(env: Env) -> None:
    cid = await new_customer(env.wallet, tier=Tier.PREMIUM)
    await topup(env.wallet, cid, 20_000_000)
    with pytest.raises(BalanceCapExceeded):
        await topup(env.wallet, cid, 1)


async def test_monthly_cap_counts_in_and_out_and_resets_at_wib_month_start(env: Env) -> None:
    # 31 January, 23:30 WIB (16:30 UTC).
    env.clock.set(datetime(2026, 1, 31, 16, 30, tzinfo=UTC))
    cid = await new_customer(env.wallet)
    for _ in range(5):  # 5 x (2,000,000 in + 2,000,000 out) = 20,000,000
        await topup(env.wallet, cid, 2_000_000)
        await pay_merchant(env.wallet, cid, 2_000_000)
    bal = await env.wallet.balance(cid)
    assert bal.month_used == 20_000_000 and bal.month_room == 0
    with pytest.raises(MonthlyLimitExceeded) as err:
        await topup(env.wallet, cid, 10_000)
    assert err.value.room == 0 and err.value.cap == 20_000_000
    # 1 February 00:00 WIB is 31 January 17:00 UTC: a new month for the customer.
    env.clock.set(datetime(2026, 1, 31, 17, 0, tzinfo=UTC))
    await topup(env.wallet, cid, 10_000)
    assert (await env.wallet.balance(cid)).month_used == 10_000
    await assert_clean(env)


async def test_regular_cannot_send_money_but_can_receive_it(env: Env) -> None:
    regular = await new_customer(env.wallet)
    premium = await new_customer(env.wallet, tier=Tier.PREMIUM)
    await topup(env.wallet, regular, 100_000)
    await topup(env.wallet, premium, 100_000)
    with pytest.raises(TierNotAllowed) as err:
        await send(env.wallet, regular, premium, 10_000)
    assert err.value.tier == "regular"
    for kind, dest in (
        (Kind.CASHOUT, SystemParty(SystemKind.CASHOUT_SETTLEMENT)),
        (Kind.BANK_TRANSFER, SystemParty(SystemKind.DISBURSEMENT_CLEARING)),
    ):
        with pytest.raises(TierNotAllowed):
            await env.wallet.move(
                MoveMoney(
                    key=key(),
                    kind=kind,
                    source=CustomerParty(regular),
                    destination=dest,
                    amount=10_000,
                )
            )
    await send(env.wallet, premium, regular, 10_000)
    assert (await env.wallet.balance(regular)).balance == 110_000
    assert (await env.wallet.balance(premium)).balance == 90_000
    await assert_clean(env)


async def test_insufficient_funds_changes_nothing(env: Env) -> None:
    a = await new_customer(env.wallet, tier=Tier.PREMIUM)
    b = await new_customer(env.wallet, tier=Tier.PREMIUM)
    await topup(env.wallet, a, 50_000)
    with pytest.raises(InsufficientFunds) as err:
        await send(env.wallet, a, b, 45_000, fee=6_500)
    assert (err.value.available, err.value.needed) == (50_000, 51_500)
    assert (await env.wallet.balance(a)).balance == 50_000
    assert (await env.wallet.balance(b)).balance == 0
    assert len(await env.db.read(lambda c: c.execute(select(movements.c.id)).all())) == 1
    await assert_clean(env)


async def test_fee_goes_to_fee_income(env: Env) -> None:
    a = await new_customer(env.wallet, tier=Tier.PREMIUM)
    b = await new_customer(env.wallet, tier=Tier.PREMIUM)
    await topup(env.wallet, a, 100_000)
    m = await send(env.wallet, a, b, 40_000, fee=2_500)
    assert m.fee == 2_500
    assert (await env.wallet.balance(a)).balance == 57_500
    assert (await env.wallet.balance(b)).balance == 40_000
    assert await env.db.read(env.wallet.ledger.system_balance, FEE_INCOME) == 2_500
    await assert_clean(env)


@pytest.mark.parametrize("amount", [0, -5_000, 20_000_001])
async def test_amount_must_be_positive_and_within_the_maximum(env: Env, amount: int) -> None:
    cid = await new_customer(env.wallet)
    with pytest.raises(InvalidAmount):
        await topup(env.wallet, cid, amount)


async def test_only_active_customers_move_money(env: Env) -> None:
    a = await new_customer(env.wallet, tier=Tier.PREMIUM)
    b = await new_customer(env.wallet, tier=Tier.PREMIUM)
    await topup(env.wallet, a, 100_000)
    await env.wallet.set_status(a, Status.BLOCKED, actor="agent:siti", reason="fraud report")
    with pytest.raises(AccountNotActive) as err:
        await send(env.wallet, a, b, 1_000)
    assert err.value.status == "blocked"
    with pytest.raises(AccountNotActive):
        await topup(env.wallet, a, 1_000)  # a blocked wallet takes no money in either
    # A PIN-locked customer can still be paid.
    await env.wallet.set_status(a, Status.ACTIVE, actor="agent:siti")
    await env.wallet.set_status(b, Status.LOCKED, actor="security")
    await send(env.wallet, a, b, 1_000)
    with pytest.raises(AccountNotActive):
        await send(env.wallet, b, a, 500)
    await assert_clean(env)


async def test_unknown_customer_and_self_transfer_are_refused(env: Env) -> None:
    a = await new_customer(env.wallet, tier=Tier.PREMIUM)
    await topup(env.wallet, a, 10_000)
    with pytest.raises(CustomerNotFound):
        await send(env.wallet, a, 999_999, 1_000)
    with pytest.raises(ValidationFailed):
        await send(env.wallet, a, a, 1_000)


async def test_replay_returns_the_original_and_moves_money_once(env: Env) -> None:
    a = await new_customer(env.wallet, tier=Tier.PREMIUM)
    b = await new_customer(env.wallet, tier=Tier.PREMIUM)
    await topup(env.wallet, a, 100_000)
    first = await send(env.wallet, a, b, 30_000, k="tx-1")
    again = await send(env.wallet, a, b, 30_000, k="tx-1")
    assert again.id == first.id and again.ref == first.ref and again.replayed
    assert (await env.wallet.balance(a)).balance == 70_000
    with pytest.raises(IdempotencyConflict):
        await send(env.wallet, a, b, 31_000, k="tx-1")
    await assert_clean(env)


async def test_replay_after_the_money_is_gone_still_returns_the_original(env: Env) -> None:
    a = await new_customer(env.wallet, tier=Tier.PREMIUM)
    b = await new_customer(env.wallet, tier=Tier.PREMIUM)
    await topup(env.wallet, a, 30_000)
    first = await send(env.wallet, a, b, 30_000, k="drain")
    again = await send(env.wallet, a, b, 30_000, k="drain")
    assert again.id == first.id and again.state is State.POSTED


async def test_concurrent_repeats_create_exactly_one_movement(env: Env) -> None:
    a = await new_customer(env.wallet, tier=Tier.PREMIUM)
    b = await new_customer(env.wallet, tier=Tier.PREMIUM)
    await topup(env.wallet, a, 100_000)
    results = await asyncio.gather(*(send(env.wallet, a, b, 10_000, k="same") for _ in range(8)))
    assert len({r.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert (await env.wallet.balance(a)).balance == 90_000
    await assert_clean(env)


async def test_hold_reserves_funds_then_posts_once(env: Env) -> None:
    cid = await new_customer(env.wallet)
    await topup(env.wallet, cid, 100_000)
    hold = await env.wallet.move(
        MoveMoney(
            key="bill-1",
            kind=Kind.BILL,
            source=CustomerParty(cid),
            destination=BILLER,
            amount=52_500,
            hold=True,
        )
    )
    assert hold.state is State.PENDING and hold.expires_at is not None
    bal = await env.wallet.balance(cid)
    assert (bal.balance, bal.available, bal.pending_debits) == (100_000, 47_500, 52_500)
    with pytest.raises(InsufficientFunds):
        await pay_merchant(env.wallet, cid, 50_000)
    posted = await env.wallet.post(hold.id, actor="biller:callback")
    assert posted.state is State.POSTED and posted.settled_by == "biller:callback"
    again = await env.wallet.post(hold.id, actor="biller:poll")  # the racing status poll
    assert again.replayed and again.settled_by == "biller:callback"
    bal = await env.wallet.balance(cid)
    assert (bal.balance, bal.available) == (47_500, 47_500)
    with pytest.raises(InvalidTransition):
        await env.wallet.void(hold.id, actor="late")
    await assert_clean(env)


async def test_void_restores_balance_and_monthly_room(env: Env) -> None:
    cid = await new_customer(env.wallet)
    await topup(env.wallet, cid, 100_000)
    hold = await env.wallet.move(
        MoveMoney(
            key="bill-2",
            kind=Kind.BILL,
            source=CustomerParty(cid),
            destination=BILLER,
            amount=20_000,
            hold=True,
        )
    )
    assert (await env.wallet.balance(cid)).month_used == 120_000
    voided = await env.wallet.void(hold.id, actor="biller:failed")
    assert voided.state is State.VOIDED
    bal = await env.wallet.balance(cid)
    assert (bal.balance, bal.available, bal.month_used) == (100_000, 100_000, 100_000)
    with pytest.raises(InvalidTransition):
        await env.wallet.post(hold.id, actor="late")
    await assert_clean(env)


async def test_pending_credits_count_toward_the_cap(env: Env) -> None:
    cid = await new_customer(env.wallet)
    await topup(env.wallet, cid, 1_000_000, hold=True)
    bal = await env.wallet.balance(cid)
    assert (bal.balance, bal.pending_credits, bal.cap_room) == (0, 1_000_000, 1_000_000)
    with pytest.raises(BalanceCapExceeded):
        await topup(env.wallet, cid, 1_000_001)
    await assert_clean(env)


async def test_holds_expire(env: Env) -> None:
    cid = await new_customer(env.wallet)
    await topup(env.wallet, cid, 100_000)
    h1 = await env.wallet.move(
        MoveMoney(
            key="tok-1",
            kind=Kind.BILL,
            source=CustomerParty(cid),
            destination=BILLER,
            amount=10_000,
            hold=True,
            hold_minutes=30,
        )
    )
    h2 = await env.wallet.move(
        MoveMoney(
            key="tok-2",
            kind=Kind.BILL,
            source=CustomerParty(cid),
            destination=BILLER,
            amount=20_000,
            hold=True,
            hold_minutes=30,
        )
    )
    env.clock.advance(timedelta(minutes=29))
    assert await env.wallet.expire_holds() == 0
    env.clock.advance(timedelta(minutes=1))
    report = await env.db.read(check_ledger, env.wallet.ledger.limits, env.clock)
    assert any("hold expired" in p for p in report.problems)
    with pytest.raises(HoldExpired):
        await env.wallet.post(h1.id, actor="late-callback")
    assert (await env.wallet.movement(h1.id)).settled_by == "expiry"
    assert await env.wallet.expire_holds() == 1
    assert (await env.wallet.movement(h2.id)).state is State.VOIDED
    assert (await env.wallet.balance(cid)).available == 100_000
    await assert_clean(env)


async def test_hot_system_account_is_spread_over_shards(env: Env) -> None:
    customers_ = [await new_customer(env.wallet) for _ in range(6)]
    for cid in customers_:
        for _ in range(5):
            await topup(env.wallet, cid, 1_000)
    used = await env.db.read(
        lambda c: c.execute(
            select(entries.c.account_id)
            .join(accounts, accounts.c.id == entries.c.account_id)
            .where(accounts.c.group_code == VA_BCA.group_code)
            .distinct()
        ).all()
    )
    assert len(used) > 1
    assert await env.db.read(env.wallet.ledger.system_balance, VA_BCA) == -30_000
    await assert_clean(env)


async def test_history_is_newest_first_and_paged(env: Env) -> None:
    cid = await new_customer(env.wallet)
    for amount in (1_000, 2_000, 3_000):
        await topup(env.wallet, cid, amount)
        env.clock.advance(timedelta(seconds=1))
    await pay_merchant(env.wallet, cid, 500)
    page1 = await env.wallet.history(cid, limit=2)
    page2 = await env.wallet.history(cid, limit=2, offset=2)
    assert [m.amount for m in page1 + page2] == [500, 3_000, 2_000, 1_000]
    assert page1[0].kind is Kind.QRIS


async def test_every_change_records_who_caused_it(env: Env) -> None:
    cid = await new_customer(env.wallet)
    await env.wallet.set_tier(cid, Tier.PREMIUM, actor="agent:rina", reason="KYC approved")
    await env.wallet.set_status(cid, Status.BLOCKED, actor="agent:rina", reason="chargeback")
    rows = await env.db.read(
        lambda c: c.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.details)
            .where(audit_log.c.customer_id == cid)
            .order_by(audit_log.c.id)
        ).all()
    )
    assert [(r.actor, r.action) for r in rows] == [
        ("customer", "customer.registered"),
        ("agent:rina", "customer.tier"),
        ("agent:rina", "customer.status"),
    ]
    assert rows[1].details == {
        "tier": "premium",
        "tier_before": "regular",
        "reason": "KYC approved",
    }
    other = await new_customer(env.wallet)
    moved = await topup(env.wallet, other, 5_000)
    assert moved.actor == "bank:014"


async def test_ledger_check_finds_tampering(env: Env) -> None:
    cid = await new_customer(env.wallet)
    await topup(env.wallet, cid, 10_000)
    await pay_merchant(env.wallet, cid, 4_000)
    await assert_clean(env)
    await env.db.write(
        lambda c: c.execute(
            update(accounts)
            .where(accounts.c.customer_id == cid)
            .values(balance=accounts.c.balance + 1)
        )
    )
    report = await env.db.read(check_ledger, env.wallet.ledger.limits, env.clock)
    assert not report.ok
    text = report.render()
    assert f"wallet:{cid}: balance 6001 but entries say 6000" in text
    assert "the books do not balance: all accounts sum to 1" in text


async def test_merchant_account_receives_qris_payment(env: Env) -> None:
    cid = await new_customer(env.wallet)
    await topup(env.wallet, cid, 10_000)
    await pay_merchant(env.wallet, cid, 7_000)
    assert await env.db.read(env.wallet.ledger.system_balance, MERCHANT) == 7_000
