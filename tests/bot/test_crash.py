"""A crash between the hold and the biller's result loses nothing and doubles nothing:
after a restart the reconciliation job settles the hold, and the ledger check is clean."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import TestServer
from sqlalchemy import insert, select

from bot.billing import Billing
from bot.convo import RecordingChannel
from bot.engine import Engine
from bot.providers.digiflazz import DigiflazzBiller
from storage.schema import conversations, outbox
from tests.conftest import Env
from tests.standins.digiflazz import FakeAggregator
from wallet.customers import NewCustomer
from wallet.model import CustomerParty, Kind, MoveMoney, State, SystemKind, SystemParty
from wallet.service import Wallet

ROOT = Path(__file__).resolve().parents[2]


async def test_killed_after_the_biller_answered_is_settled_after_restart(env: Env) -> None:
    agg = FakeAggregator("kaspro", "dev-key")
    server = TestServer(agg.app())
    await server.start_server()
    wallet = Wallet(env.db, env.settings, secret_key=b"crash-test")
    customer = await wallet.register(NewCustomer("081234567890", "Siti"), pin="246813")
    await wallet.move(MoveMoney(key="fund", kind=Kind.TOPUP,
                                source=SystemParty(SystemKind.TOPUP_FLOAT, "va:014"),
                                destination=CustomerParty(customer.id), amount=100_000))
    await env.db.write(lambda c: c.execute(insert(conversations).values(
        channel="console", chat_id="crash", customer_id=customer.id, language="id",
        updated_at=env.clock.now())))

    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "tests/bot/crash_worker.py"), env.url,
        str(server.make_url("")), "crash", cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 9, out.decode()
    assert "biller answered success" in out.decode()

    # The biller took the money; KasPro only holds it.
    bal = await wallet.balance(customer.id)
    assert (bal.balance, bal.available, bal.pending_debits) == (100_000, 48_500, 51_500)
    # The restarted service: its reconciliation asks the aggregator and settles once.
    biller = DigiflazzBiller(str(server.make_url("")), "kaspro", "dev-key")
    engine = Engine(wallet, channels={"console": RecordingChannel()}, biller=biller)
    billing = Billing(wallet, engine)
    settled = await asyncio.gather(billing.reconcile(0), billing.reconcile(0))
    assert sum(settled) == 1
    bal = await wallet.balance(customer.id)
    assert (bal.balance, bal.available, bal.pending_debits) == (48_500, 48_500, 0)
    history = await wallet.history(customer.id)
    assert history[0].state is State.POSTED and history[0].meta["serial"].startswith("SN-")
    told = await env.db.read(lambda c: [r[0]["text"] for r in c.execute(
        select(outbox.c.payload).where(outbox.c.chat_id == "crash")) if "text" in r[0]])
    assert any("berhasil" in t for t in told)
    check = subprocess.run(  # noqa: ASYNC221 - the operator's command, once
        [sys.executable, "-m", "bot.cli", "--database-url", env.url, "ledger", "check"],
        capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert check.returncode == 0 and "ledger is clean" in check.stdout, check.stdout
    await biller.close()
    await server.close()
