"""Partner and provider callbacks over HTTP: signatures, replays, races."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import func, select

from bot.providers.digiflazz import DigiflazzBiller
from bot.server import Service, make_app
from storage.schema import movements
from tests.conftest import Env
from tests.standins.digiflazz import FakeAggregator
from tests.wallet.helpers import new_customer
from wallet import partners
from wallet.billers import bill_product
from wallet.model import CustomerParty, Kind, MoveMoney, State, SystemKind, SystemParty, Tier
from wallet.service import Wallet

SECRET = b"partner-secret-123"
HOOK = b"biller-webhook-secret"


@dataclass
class Stack:
    env: Env
    client: TestClient
    service: Service
    agg: FakeAggregator

    async def post(
        self,
        path: str,
        payload: Any,
        *,
        secret: bytes | None = SECRET,
        ts: int | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        body = raw if raw is not None else json.dumps(payload).encode()
        stamp = int(time.time()) if ts is None else ts
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Kaspro-Timestamp"] = str(stamp)
            headers["X-Kaspro-Signature"] = partners.sign(secret, stamp, body)
        resp = await self.client.post(path, data=body, headers=headers)
        return resp.status, await resp.json()

    async def movements(self) -> int:
        return int(
            await self.env.db.read(lambda c: c.scalar(select(func.count()).select_from(movements)))
        )


@pytest.fixture
async def stack(env: Env) -> AsyncIterator[Stack]:
    agg = FakeAggregator("kaspro", "dev-key")
    agg_server = TestServer(agg.app())
    await agg_server.start_server()
    settings = env.settings.model_copy(
        update={
            "partner_secret": SecretStr(SECRET.decode()),
            "biller_webhook_secret": SecretStr(HOOK.decode()),
            "biller_url": str(agg_server.make_url("")),
            "biller_username": "kaspro",
            "biller_api_key": SecretStr("dev-key"),
            "bills": env.settings.bills.model_copy(update={"provider": "digiflazz"}),
        }
    )
    service = Service(
        settings, env.db, Wallet(env.db, settings, env.clock, secret_key=b"test-secret")
    )
    client = TestClient(TestServer(make_app(service)))
    await client.start_server()
    yield Stack(env, client, service, agg)
    await client.close()
    biller = service.engine.biller
    if isinstance(biller, DigiflazzBiller):
        await biller.close()
    await agg_server.close()


async def va_payload(stack: Stack, amount: int, ref: str) -> dict[str, Any]:
    cid = await new_customer(stack.env.wallet)
    customer = await stack.env.wallet.customer(cid)
    return {
        "bank_code": "014",
        "va_number": "39358" + customer.phone.removeprefix("+62"),
        "amount": amount,
        "reference": ref,
        "_cid": cid,
    }


async def test_va_callback_forged_or_missing_signature_changes_nothing(stack: Stack) -> None:
    p = await va_payload(stack, 100_000, "BCA-1")
    cid = p.pop("_cid")
    assert (await stack.post("/callbacks/va", p, secret=b"wrong"))[0] == 401
    assert (await stack.post("/callbacks/va", p, secret=None))[0] == 401
    old = int(time.time()) - 301  # outside the 5-minute window: a replayed capture
    assert (await stack.post("/callbacks/va", p, ts=old))[0] == 401
    assert (await stack.post("/callbacks/va", None, raw=b"{not json"))[0] == 400
    assert (await stack.env.wallet.balance(cid)).balance == 0
    assert await stack.movements() == 0


async def test_va_callback_replayed_is_credited_once(stack: Stack) -> None:
    p = await va_payload(stack, 100_000, "BCA-2")
    cid = p.pop("_cid")
    answers = await asyncio.gather(*(stack.post("/callbacks/va", p) for _ in range(5)))
    assert {status for status, _ in answers} == {200}
    assert sum(not body["replayed"] for _, body in answers) == 1
    assert len({body["ref"] for _, body in answers}) == 1
    assert (await stack.env.wallet.balance(cid)).balance == 100_000


async def test_va_callback_over_the_cap_is_refused_with_a_reason(stack: Stack) -> None:
    p = await va_payload(stack, 2_000_001, "BCA-3")
    p.pop("_cid")
    status, body = await stack.post("/callbacks/va", p)
    assert (status, body) == (422, {"status": "rejected", "reason": "balance_cap"})
    p2 = {**p, "amount": 1_999_999, "reference": "BCA-4"}
    assert (await stack.post("/callbacks/va", p2))[0] == 200
    status, body = await stack.post("/callbacks/va", {**p, "amount": 2, "reference": "BCA-5"})
    assert (status, body) == (422, {"status": "rejected", "reason": "balance_cap"})
    unknown = {**p, "va_number": "3935800000000000", "reference": "BCA-6", "amount": 10}
    assert (await stack.post("/callbacks/va", unknown))[0] == 404


async def test_token_redeem_is_signed_and_idempotent(stack: Stack) -> None:
    w = stack.env.wallet
    cid = await new_customer(w)
    issued = await w.run(
        w.tokens.issue_in,
        purpose="topup",
        customer_id=cid,
        amount=50_000,
        key="tok-1",
        actor="test",
    )
    body = {"partner": "alfamart", "token": issued.code, "amount": 50_000, "reference": "A1"}
    assert (await stack.post("/partner/tokens/redeem", body, secret=b"x"))[0] == 401
    first = await stack.post("/partner/tokens/redeem", body)
    again = await stack.post("/partner/tokens/redeem", body)
    assert first[0] == again[0] == 200 and again[1]["replayed"] is True
    other = await stack.post("/partner/tokens/redeem", {**body, "reference": "A2"})
    assert other == (409, {"status": "rejected", "reason": "token_redeemed"})
    assert (await w.balance(cid)).balance == 50_000


async def bill_hold(stack: Stack, customer_no: str) -> tuple[int, str]:
    w = stack.env.wallet
    cid = await new_customer(w)
    await w.move(
        MoveMoney(
            key=f"fund-{customer_no}",
            kind=Kind.TOPUP,
            source=SystemParty(SystemKind.TOPUP_FLOAT, "va:014"),
            destination=CustomerParty(cid),
            amount=200_000,
        )
    )
    held = await w.move(
        MoveMoney(
            key=f"bill-{customer_no}",
            kind=Kind.BILL,
            source=CustomerParty(cid),
            destination=SystemParty(SystemKind.BILLER_SETTLEMENT),
            amount=125_000,
            fee=2_500,
            hold=True,
            meta={"product": "plnpasca", "customer_no": customer_no},
        )
    )
    return cid, held.ref


async def test_biller_callback_races_the_status_poll_and_settles_once(stack: Stack) -> None:
    cid, ref = await bill_hold(stack, "512345672222")
    product = bill_product(stack.service.settings.bills.products, "plnpasca")
    biller = stack.service.engine.biller
    assert (await biller.pay(ref, product, "512345672222", 125_000)).status == "pending"
    hook = json.dumps(stack.agg.finish(ref, ok=True)).encode()
    sig = "sha1=" + hmac.new(HOOK, hook, hashlib.sha1).hexdigest()
    forged = await stack.client.post(
        "/callbacks/biller", data=hook, headers={"X-Hub-Signature": "sha1=00"}
    )
    assert forged.status == 401
    callback = stack.client.post("/callbacks/biller", data=hook, headers={"X-Hub-Signature": sig})
    poll = stack.service.billing.reconcile(older_than_seconds=0)
    resp, _ = await asyncio.gather(callback, poll)
    assert resp.status == 200
    again = await stack.client.post(
        "/callbacks/biller", data=hook, headers={"X-Hub-Signature": sig}
    )
    assert again.status == 200
    moved = await stack.env.wallet.db.read(stack.env.wallet.ledger.find, ref=ref)
    assert moved is not None and moved.state is State.POSTED
    assert moved.meta["serial"] == f"SN-{ref[-6:]}"
    bal = await stack.env.wallet.balance(cid)
    assert (bal.balance, bal.pending_debits) == (200_000 - 127_500, 0)


async def test_digiflazz_adapter_against_the_fake_aggregator(stack: Stack) -> None:
    biller = stack.service.engine.biller
    assert isinstance(biller, DigiflazzBiller)
    products = stack.service.settings.bills.products
    bill = await biller.inquiry(bill_product(products, "plnpasca"), "512345670000")
    assert (bill.name, bill.amount, bill.period) == ("BUDI", 125_000, "202611")
    pulsa = bill_product(products, "telkomsel50")
    ok = await biller.pay("KPREF000001", pulsa, "081234567890", 50_000)
    again = await biller.pay("KPREF000001", pulsa, "081234567890", 50_000)
    assert ok.status == again.status == "success" and ok.serial == again.serial
    assert (await biller.pay("KPREF000002", pulsa, "081234561111", 50_000)).status == "failed"
    assert all(
        r["sign"] == hashlib.md5(f"kasprodev-key{r['ref_id']}".encode()).hexdigest()
        for r in stack.agg.requests
    )


async def test_disbursement_callback_settles_a_pending_bank_transfer_once(stack: Stack) -> None:
    w = stack.env.wallet
    cid = await new_customer(w)
    await w.set_tier(cid, Tier.PREMIUM, actor="test")
    await w.move(
        MoveMoney(
            key="fund-bank",
            kind=Kind.TOPUP,
            source=SystemParty(SystemKind.TOPUP_FLOAT, "va:014"),
            destination=CustomerParty(cid),
            amount=300_000,
        )
    )
    held = await w.move(
        MoveMoney(
            key="bank-1",
            kind=Kind.BANK_TRANSFER,
            source=CustomerParty(cid),
            destination=SystemParty(SystemKind.DISBURSEMENT_CLEARING),
            amount=200_000,
            fee=6_500,
            hold=True,
            meta={"bank_code": "014", "account_no": "5550002222", "account_name": "BUDI"},
        )
    )
    body = {"reference": held.ref, "status": "success", "bank_ref": "BCA-TRF-1"}
    assert (await stack.post("/callbacks/disbursement", body, secret=b"forged"))[0] == 401
    assert (await w.balance(cid)).pending_debits == 206_500
    answers = await asyncio.gather(*(stack.post("/callbacks/disbursement", body) for _ in range(3)))
    assert [a[0] for a in answers] == [200, 200, 200]
    bal = await w.balance(cid)
    assert (bal.balance, bal.pending_debits) == (300_000 - 206_500, 0)
    late = await stack.post("/callbacks/disbursement", {**body, "status": "failed"})
    assert late == (200, {"status": "ok", "state": "posted"})  # a posted transfer stays posted
