"""Flow throughput: PPOB purchases end to end through the engine, and QR decoding.

``python bench/flows.py --json`` prints one JSON line::

    {"sqlite": {"purchases_per_s", "p99_ms", ...},
     "postgres": {...the same...},
     "qr_decode_ms_median", "qr": {...}, "receipt": {...}, "targets": {...}, "config": {...}}

What is measured, per database (no HTTP, no channel: the engine is called directly):

* ``--customers`` customers are made first, untimed, straight through the wallet:
  ``Wallet.register(NewCustomer(phone, ...), pin=PIN)`` (a unique ``0812…`` number, so
  Telkomsel; the last digit is never one the sandbox biller fails, delays or does not
  find), a top-up movement from the top-up float, and a ``conversations`` row linking
  the console chat ``flows-<n>`` to the customer (language ``id``), as
  ``bot.convo``'s ``given_customer`` does.
* Each customer then buys Telkomsel credit (``telkomsel50``, Rp 51.500) from the sandbox
  biller, ``--rounds`` times in a row: ``menu`` → [bills] → [pulsa] → [self] →
  [telkomsel50] → ``ya`` → the PIN: 7 messages. Every button pressed must have been
  offered by the reply before; the reply to the PIN must contain "berhasil" (the PIN is
  verified with argon2id, the hold made, the biller called after the commit, the hold
  posted and the receipt queued, all inside that one ``Engine.handle``). Messages of one
  chat are sequential; up to ``--concurrency`` chats are in flight at once and interleave.
  ``--warmup`` extra customers buy first, untimed.
* ``purchases_per_s``: completed purchases over the wall time of the timed run;
  ``p50_ms``/``p99_ms``: latency of one ``Engine.handle`` (replies delivered to
  ``bot.convo.RecordingChannel``), over all messages; ``step_p50_ms``/``step_p99_ms`` per
  step; ``purchase_p50_ms``/``purchase_p99_ms``: one whole conversation.
* PIN hashing: the main run uses cheap but production-shaped argon2id parameters
  (``CHEAP_SECURITY``; reported as ``argon2``). With ``--skip-production-pin`` unset the
  run is repeated on a fresh database with ``config.yaml``'s parameters (customers are
  registered with them too, so nothing is rehashed): ``purchases_per_s_production_pin``,
  ``p99_ms_production_pin`` and ``production_pin`` (the whole report of that run).
* ``per_message``: ``db.read``/``db.write`` calls and SQL statements per message, the time
  awaiting them, and the time awaiting PIN verification.
* At the end: ``ledger_clean`` (``wallet.check.check_ledger``), ``balances_ok`` (every
  customer holds the top-up minus what they bought) and ``bill_movements`` by state (all
  posted, none pending).

``qr_decode_ms_median``: ``bot.qrdecode.decode_qr`` on a 12-megapixel phone-like JPEG
with a QRIS code (``tests/bot/test_qrdecode.py``'s ``photo()``), median of ``--qr-runs``
calls, one at a time, after one untimed call; the result must be the payload. Also the
thread CPU time of those calls and the same for a photo without a code (both passes).
``receipt``: rendering the purchase's receipt PNG, which the channel adapters do at
delivery (the recording channel here does not), median of ``--receipt-runs``.

The SQLite databases are temporary files; PostgreSQL (``--pg-host``, trust auth) gets a
throwaway database ``kaspro_bench_flows``, recreated for each run and dropped at the end.
Logs go to stderr. Exit status 1 when a purchase failed, the ledger or the balances did
not check out, the QR code was not read, or a backend errored.
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# Run as ``python bench/flows.py``, this file's folder comes first on sys.path, and this
# file would shadow the project's ``flows`` package: put the project's root there instead
# (which also makes ``tests`` importable, for the QR photo helper).
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")
]

import asyncpg
from sqlalchemy import Connection, event, func, insert, select
from sqlalchemy.engine import Engine as SqlEngine

from bot import i18n
from bot.convo import RecordingChannel, RecordingOtpSender
from bot.engine import Engine, Inbound, receipt_from
from storage.db import Database
from storage.migrate import upgrade
from storage.schema import conversations, movements
from wallet.billers import SandboxBiller, bill_product
from wallet.check import check_ledger
from wallet.config import Settings, load_settings
from wallet.customers import NewCustomer
from wallet.model import CustomerParty, Kind, MoveMoney, SystemKind, SystemParty
from wallet.service import Wallet

log = logging.getLogger("kaspro.bench.flows")

CHANNEL = "console"
PIN = "864209"
PRODUCT = "telkomsel50"  # 0812… numbers are Telkomsel
CHEAP_SECURITY = {"pin_hash_memory_kib": 1024, "pin_hash_time_cost": 1, "pin_hash_parallelism": 1}
PG_DB = "kaspro_bench_flows"
STEPS = ("menu", "bills", "pulsa", "self", "product", "yes", "pin")
MESSAGES_PER_PURCHASE = len(STEPS)
SUCCESS_WORD = "berhasil"
TOPUP_HEADROOM = 100_000  # rupiah left over after the last purchase
TARGET_QR_MS = 100.0


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Options:
    customers: int
    concurrency: int
    warmup: int
    rounds: int
    qr_runs: int
    receipt_runs: int
    pool_size: int | None
    skip_sqlite: bool
    skip_postgres: bool
    skip_qr: bool
    skip_production_pin: bool
    pg_host: str
    pg_port: int
    pg_user: str
    message_timeout: float
    run_timeout: float


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, bool]:
    p = argparse.ArgumentParser(
        description="PPOB purchases through the engine (no HTTP), and QR decoding."
    )
    p.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    p.add_argument("--customers", type=int, default=200, help="customers (chats) timed")
    p.add_argument("--concurrency", type=int, default=50, help="chats in flight at once")
    p.add_argument("--warmup", type=int, default=10, help="untimed customers before each run")
    p.add_argument("--rounds", type=int, default=1, help="purchases per customer, in a row")
    p.add_argument("--qr-runs", type=int, default=10, help="decode_qr calls timed")
    p.add_argument("--receipt-runs", type=int, default=10, help="receipt renders timed")
    p.add_argument(
        "--pool-size", type=int, default=None, help="database pool size (default: config.yaml)"
    )
    p.add_argument("--skip-sqlite", action="store_true")
    p.add_argument("--skip-postgres", action="store_true")
    p.add_argument("--skip-qr", action="store_true", help="no QR decode / receipt timing")
    p.add_argument(
        "--skip-production-pin",
        action="store_true",
        help="only the cheap-PIN run (no run with config.yaml's argon2 parameters)",
    )
    p.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    p.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    p.add_argument("--message-timeout", type=float, default=60.0, help="seconds per message")
    p.add_argument("--run-timeout", type=float, default=1800.0, help="seconds per run")
    a = p.parse_args(argv)
    if a.customers < 1 or a.concurrency < 1 or a.rounds < 1:
        p.error("--customers, --concurrency and --rounds must be at least 1")
    if a.warmup < 0 or a.qr_runs < 1 or a.receipt_runs < 1:
        p.error("--warmup must be >= 0, --qr-runs and --receipt-runs >= 1")
    opts = Options(
        customers=a.customers,
        concurrency=a.concurrency,
        warmup=a.warmup,
        rounds=a.rounds,
        qr_runs=a.qr_runs,
        receipt_runs=a.receipt_runs,
        pool_size=a.pool_size,
        skip_sqlite=a.skip_sqlite,
        skip_postgres=a.skip_postgres,
        skip_qr=a.skip_qr,
        skip_production_pin=a.skip_production_pin,
        pg_host=a.pg_host,
        pg_port=a.pg_port,
        pg_user=a.pg_user,
        message_timeout=a.message_timeout,
        run_timeout=a.run_timeout,
    )
    return opts, a.json


# --------------------------------------------------------------------------- statistics
def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of seconds, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(max(int(q * len(ordered) + 0.999999) - 1, 0), len(ordered) - 1)
    return round(ordered[rank] * 1000, 3)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --------------------------------------------------------------------------- instrumentation
@dataclass
class Meter:
    """Database calls, SQL statements and PIN checks of a run, seen from the outside (the
    engine is not changed). Lists: ``append`` is atomic across the worker threads."""

    reads: list[float] = field(default_factory=list)  # s awaited per db.read
    writes: list[float] = field(default_factory=list)  # s awaited per db.write
    statements: list[str] = field(default_factory=list)  # verb of each SQL statement
    pin_verify: list[float] = field(default_factory=list)  # s awaited per PIN verify
    on: bool = False

    def reset(self) -> None:
        self.reads.clear()
        self.writes.clear()
        self.statements.clear()
        self.pin_verify.clear()


def instrument(wallet: Wallet, meter: Meter) -> Callable[[], None]:
    """Wrap the wallet's ``Database`` and ``PinHasher`` instances. Returns the undo."""
    db, pins = wallet.db, wallet.pins
    orig_read, orig_write, orig_verify = db.read, db.write, pins.verify

    async def read(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await orig_read(fn, *args, **kwargs)
        finally:
            if meter.on:
                meter.reads.append(time.perf_counter() - started)

    async def write(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await orig_write(fn, *args, **kwargs)
        finally:
            if meter.on:
                meter.writes.append(time.perf_counter() - started)

    async def verify(stored: str, pin: str) -> bool:
        started = time.perf_counter()
        try:
            return await orig_verify(stored, pin)
        finally:
            if meter.on:
                meter.pin_verify.append(time.perf_counter() - started)

    db.read = read  # type: ignore[method-assign]
    db.write = write  # type: ignore[method-assign]
    pins.verify = verify  # type: ignore[method-assign]

    def on_statement(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        if meter.on:
            meter.statements.append((statement.lstrip().split(None, 1) or [""])[0].upper())

    event.listen(SqlEngine, "before_cursor_execute", on_statement)

    def undo() -> None:
        event.remove(SqlEngine, "before_cursor_execute", on_statement)
        db.read = orig_read  # type: ignore[method-assign]
        db.write = orig_write  # type: ignore[method-assign]
        pins.verify = orig_verify  # type: ignore[method-assign]

    return undo


# --------------------------------------------------------------------------- customers
class PurchaseFailed(Exception):
    pass


@dataclass
class BenchCustomer:
    index: int
    chat_id: str
    phone: str  # as typed, 0812…
    customer_id: int
    funded: int
    bought: int = 0  # purchases confirmed with "berhasil"


@dataclass
class RunResult:
    latencies: list[float] = field(default_factory=list)  # s per Engine.handle
    by_step: dict[str, list[float]] = field(default_factory=dict)
    purchases: list[float] = field(default_factory=list)  # s per whole conversation
    messages: int = 0
    done: int = 0
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0


def phone_of(index: int) -> str:
    """``0812`` + 8 digits, unique per index; ends in 7, so the sandbox biller (which
    fails …1111, delays …2222/…3333 and does not find …4040) pays it at once."""
    return f"0812{index:07d}7"


def _link_chat(conn: Connection, chat_id: str, customer_id: int, now: datetime) -> None:
    conn.execute(
        insert(conversations).values(
            channel=CHANNEL, chat_id=chat_id, customer_id=customer_id, language="id", updated_at=now
        )
    )


async def make_customers(
    wallet: Wallet, indices: range, funded: int, concurrency: int
) -> list[BenchCustomer]:
    """Register, top up and link a chat for each index, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> BenchCustomer:
        async with gate:
            phone, chat_id = phone_of(index), f"flows-{index}"
            customer = await wallet.register(
                NewCustomer(phone, "Budi", "Santoso", email=f"flows{index}@example.com"),
                pin=PIN,
                actor="bench",
            )
            await wallet.move(
                MoveMoney(
                    key=f"bench-flows-topup-{customer.id}",
                    kind=Kind.TOPUP,
                    source=SystemParty(SystemKind.TOPUP_FLOAT, "va:014"),
                    destination=CustomerParty(customer.id),
                    amount=funded,
                    actor="bench",
                )
            )
            await wallet.db.write(_link_chat, chat_id, customer.id, wallet.clock.now())
            return BenchCustomer(index, chat_id, phone, customer.id, funded)

    return list(await asyncio.gather(*(one(i) for i in indices)))


class Simulation:
    """Drives purchase conversations through one engine."""

    def __init__(self, engine: Engine, opts: Options) -> None:
        self.engine = engine
        self.opts = opts
        self.channel: RecordingChannel = engine.channels[CHANNEL]  # type: ignore[assignment]
        self.counter: Counter[str] = Counter()  # messages sent per chat (unique ids)
        self.last_receipt: dict[str, Any] | None = None

    def _replies(self, mark: int, chat_id: str) -> list[dict[str, Any]]:
        return [p for cid, p in self.channel.sent[mark:] if cid == chat_id]

    async def purchase(self, c: BenchCustomer, result: RunResult | None) -> None:
        offered: list[str] = []
        started_purchase = time.perf_counter()

        async def send(step: str, *, expect_button: str | None = None, **kw: Any) -> list[Any]:
            nonlocal offered
            if expect_button is not None and expect_button not in offered:
                raise PurchaseFailed(
                    f"{step}: button {expect_button!r} not offered (offered: {offered[:10]})"
                )
            self.counter[c.chat_id] += 1
            msg = Inbound(CHANNEL, c.chat_id, f"{c.chat_id}-{self.counter[c.chat_id]}", **kw)
            mark = len(self.channel.sent)
            started = time.perf_counter()
            async with asyncio.timeout(self.opts.message_timeout):
                await self.engine.handle(msg)
            took = time.perf_counter() - started
            if result is not None:
                result.messages += 1
                result.latencies.append(took)
                result.by_step.setdefault(step, []).append(took)
            replies = self._replies(mark, c.chat_id)
            if not replies:
                raise PurchaseFailed(f"{step}: no reply")
            offered = [str(b["value"]) for r in replies for b in r.get("buttons") or []]
            return replies

        await send("menu", text="menu")
        await send("bills", expect_button="bills", choice="bills")
        await send("pulsa", expect_button="pulsa", choice="pulsa")
        await send("self", expect_button="self", choice="self")
        summary = await send("product", expect_button=PRODUCT, choice=PRODUCT)
        if not any("Total" in str(r.get("text", "")) for r in summary):
            raise PurchaseFailed("product: no summary: " + _said(summary))
        await send("yes", text="ya")
        replies = await send("pin", text=PIN)
        texts = [str(r.get("text", "")) for r in replies if r.get("type") == "text"]
        if not any(SUCCESS_WORD in t and c.phone in t for t in texts):
            raise PurchaseFailed("pin: no success: " + _said(replies))
        receipts = [r for r in replies if r.get("type") == "receipt"]
        if not receipts:
            raise PurchaseFailed("pin: no receipt")
        self.last_receipt = receipts[-1]
        c.bought += 1
        if result is not None:
            result.purchases.append(time.perf_counter() - started_purchase)

    async def run(self, customers: list[BenchCustomer], result: RunResult | None) -> None:
        """``--rounds`` purchases per customer, at most ``--concurrency`` chats at once."""
        todo = iter(customers)

        async def worker() -> None:
            for c in todo:
                for _ in range(self.opts.rounds):
                    try:
                        await self.purchase(c, result)
                    except Exception as exc:  # a benchmark counts failures instead of stopping
                        if result is None:
                            raise
                        result.failed += 1
                        result.failures[type(exc).__name__] += 1
                        if len(result.samples) < 5:
                            result.samples.append(f"{c.chat_id}: {type(exc).__name__}: {exc}")
                        break  # the chat may be mid-flow: its other rounds are moot
                    else:
                        if result is not None:
                            result.done += 1

        workers = [
            asyncio.create_task(worker()) for _ in range(min(self.opts.concurrency, len(customers)))
        ]
        try:
            async with asyncio.timeout(self.opts.run_timeout):
                await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


def _said(replies: list[dict[str, Any]]) -> str:
    return " | ".join(str(r.get("text", r.get("type"))) for r in replies)[:300]


# --------------------------------------------------------------------------- one engine run
def _bill_states(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        select(movements.c.state, func.count())
        .where(movements.c.kind == Kind.BILL.value)
        .group_by(movements.c.state)
    ).all()
    return {str(state): int(n) for state, n in rows}


def argon2_params(settings: Settings) -> dict[str, int]:
    s = settings.security
    return {
        "time_cost": s.pin_hash_time_cost,
        "memory_kib": s.pin_hash_memory_kib,
        "parallelism": s.pin_hash_parallelism,
    }


async def engine_run(url: str, settings: Settings, opts: Options, label: str) -> dict[str, Any]:
    """Migrate the (fresh) database at ``url``, make the customers, warm up, time."""
    await upgrade(url)
    pool_size = opts.pool_size or settings.db.pool_size
    db = Database.from_url(
        url, pool_size=pool_size, busy_timeout_ms=settings.db.sqlite_busy_timeout_ms
    )
    wallet = Wallet(db, settings, secret_key=b"kaspro-bench-flows")
    engine = Engine(
        wallet,
        idle_minutes=settings.idle_timeout_minutes,
        channels={CHANNEL: RecordingChannel()},
        otp_sender=RecordingOtpSender(),
        biller=SandboxBiller(),
    )
    price = bill_product(settings.bills.products, PRODUCT).price
    funded = opts.rounds * price + TOPUP_HEADROOM
    meter = Meter()
    undo = instrument(wallet, meter)
    sim = Simulation(engine, opts)
    result = RunResult()
    try:
        t0 = time.perf_counter()
        everyone = await make_customers(
            wallet, range(opts.customers + opts.warmup), funded, opts.concurrency
        )
        setup = time.perf_counter() - t0
        timed, warm = everyone[: opts.customers], everyone[opts.customers :]
        if warm:
            await sim.run(warm, None)
        log.info(
            "%s: %d customers x %d purchases, %d in flight, argon2 %s (setup %.1fs)",
            label, opts.customers, opts.rounds, opts.concurrency, argon2_params(settings), setup,
        )  # fmt: skip
        load_before = _loadavg()
        meter.on = True
        cpu0, t0 = time.process_time(), time.perf_counter()
        await sim.run(timed, result)
        result.wall = time.perf_counter() - t0
        result.cpu = time.process_time() - cpu0
        meter.on = False
        load_after = _loadavg()
        report = await db.read(check_ledger, wallet.ledger.limits, wallet.clock)
        balances = await asyncio.gather(*(wallet.balance(c.customer_id) for c in everyone))
        wrong_balances = [
            f"{c.chat_id}: {b.balance} != {c.funded - c.bought * price}"
            for c, b in zip(everyone, balances, strict=True)
            if b.balance != c.funded - c.bought * price
        ]
        states = await db.read(_bill_states)
        receipt = sim.last_receipt
    finally:
        undo()
        await db.dispose()
    bought = sum(c.bought for c in everyone)
    states_ok = states.get("posted", 0) == bought and set(states) <= {"posted"}
    log.info(
        "%s: %.1f purchases/s, p50 %s ms, p99 %s ms, %d failed, ledger %s",
        label, result.done / result.wall if result.wall else 0,
        pct(result.latencies, 0.5), pct(result.latencies, 0.99), result.failed,
        "clean" if report.ok else "NOT CLEAN",
    )  # fmt: skip
    for sample in result.samples:
        log.warning("%s: %s", label, sample)
    if not report.ok:
        log.warning("%s: %s", label, report.render())
    n = max(result.messages, 1)
    verbs = Counter(meter.statements)
    out: dict[str, Any] = {
        "purchases_per_s": round(result.done / result.wall, 2) if result.wall else 0.0,
        "p50_ms": pct(result.latencies, 0.50),
        "p99_ms": pct(result.latencies, 0.99),
        "max_ms": pct(result.latencies, 1.0),
        "messages_per_s": round(result.messages / result.wall, 1) if result.wall else 0.0,
        "purchase_p50_ms": pct(result.purchases, 0.50),
        "purchase_p99_ms": pct(result.purchases, 0.99),
        "purchases": result.done,
        "failed_purchases": result.failed,
        "failures": dict(result.failures),
        "failure_samples": result.samples,
        "messages": result.messages,
        "customers": opts.customers,
        "ledger_clean": report.ok,
        "ledger_problems": report.problems[:5],
        "ledger_movements": report.movements,
        "balances_ok": not wrong_balances,
        "wrong_balances": wrong_balances[:5],
        "bill_movements": states,
        "bill_movements_ok": states_ok,
        "wall_s": round(result.wall, 3),
        "cpu_s": round(result.cpu, 3),
        "cpu_ms_per_message": round(result.cpu / n * 1000, 3),
        "cpu_ms_per_purchase": round(result.cpu / max(result.done, 1) * 1000, 3),
        "cpu_utilisation": round(result.cpu / result.wall, 2) if result.wall else None,
        "per_message": {
            "db_reads": round(len(meter.reads) / n, 3),
            "db_writes": round(len(meter.writes) / n, 3),
            "statements": round(len(meter.statements) / n, 3),
            "statements_by_verb": {k: round(v / n, 3) for k, v in verbs.most_common()},
            "read_awaited_ms": round(sum(meter.reads) / n * 1000, 3),
            "write_awaited_ms": round(sum(meter.writes) / n * 1000, 3),
            "pin_verify_awaited_ms": round(sum(meter.pin_verify) / n * 1000, 3),
        },
        "pin_verify_p50_ms": pct(meter.pin_verify, 0.5),
        "step_p50_ms": {step: pct(v, 0.5) for step, v in result.by_step.items()},
        "step_p99_ms": {step: pct(v, 0.99) for step, v in result.by_step.items()},
        "setup_s": round(setup, 2),
        "argon2": argon2_params(settings),
        "pool_size": pool_size,
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": load_after,
    }
    if receipt is not None:
        out["_receipt"] = receipt  # for the render timing; removed before printing
    return out


def failed_run(r: dict[str, Any]) -> bool:
    return bool(
        r.get("failed_purchases")
        or not r.get("ledger_clean")
        or not r.get("balances_ok")
        or not r.get("bill_movements_ok")
    )


# --------------------------------------------------------------------------- backends
@dataclass
class PgAdmin:
    host: str
    port: int
    user: str

    def url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{dbname}"

    async def execute(self, sql: str) -> Any:
        conn = await asyncpg.connect(
            host=self.host, port=self.port, user=self.user, database="postgres", timeout=10
        )
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def recreate(self, dbname: str) -> None:
        await self.drop(dbname)
        await self.execute(f'CREATE DATABASE "{dbname}"')

    async def drop(self, dbname: str) -> None:
        await self.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def _modes(opts: Options) -> list[tuple[str, dict[str, int] | None]]:
    modes: list[tuple[str, dict[str, int] | None]] = [("cheap_pin", CHEAP_SECURITY)]
    if not opts.skip_production_pin:
        modes.append(("production_pin", None))  # config.yaml's argon2id parameters
    return modes


def combine(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The cheap-PIN run's report, with the production-PIN figures next to it."""
    out = dict(runs["cheap_pin"])
    prod = runs.get("production_pin")
    if prod is not None:
        out["purchases_per_s_production_pin"] = prod["purchases_per_s"]
        out["p50_ms_production_pin"] = prod["p50_ms"]
        out["p99_ms_production_pin"] = prod["p99_ms"]
        out["pin_verify_p50_ms_production_pin"] = prod["pin_verify_p50_ms"]
        out["cpu_ms_per_purchase_production_pin"] = prod["cpu_ms_per_purchase"]
        out["production_pin"] = {k: v for k, v in prod.items() if not k.startswith("_")}
    return out


async def bench_sqlite(opts: Options, tmp: Path) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {}
    for mode, security in _modes(opts):
        url = f"sqlite:///{tmp / f'kaspro-flows-{mode}.db'}"
        overrides: dict[str, Any] = {"database_url": url}
        if security is not None:
            overrides["security"] = security
        runs[mode] = await engine_run(url, load_settings(**overrides), opts, f"sqlite {mode}")
    out = combine(runs)
    out["sqlite_version"] = sqlite3.sqlite_version
    return out


async def bench_postgres(opts: Options) -> dict[str, Any]:
    pg = PgAdmin(opts.pg_host, opts.pg_port, opts.pg_user)
    try:
        version = await pg.execute("SHOW server_version")
    except Exception as exc:
        raise RuntimeError(
            f"PostgreSQL at {opts.pg_host}:{opts.pg_port} is not reachable "
            f"(use --skip-postgres): {exc}"
        ) from exc
    runs: dict[str, dict[str, Any]] = {}
    try:
        for mode, security in _modes(opts):
            await pg.recreate(PG_DB)
            url = pg.url(PG_DB)
            overrides: dict[str, Any] = {"database_url": url}
            if security is not None:
                overrides["security"] = security
            runs[mode] = await engine_run(url, load_settings(**overrides), opts, f"postgres {mode}")
    finally:
        try:
            await pg.drop(PG_DB)
        except Exception as exc:
            log.warning("could not drop database %s: %s", PG_DB, exc)
    out = combine(runs)
    out["server_version"] = version
    return out


# --------------------------------------------------------------------------- QR, receipts
def _timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], list[float], Any]:
    """(wall s, thread CPU s) of ``runs`` calls of ``fn`` after one untimed call."""
    last = fn()
    walls, cpus = [], []
    for _ in range(runs):
        c0, t0 = time.thread_time(), time.perf_counter()
        last = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
    return walls, cpus, last


def qr_bench(opts: Options) -> dict[str, Any]:
    """``decode_qr`` on a 12 MP phone-like JPEG made by the tests' own helper."""
    from PIL import Image

    from bot.qrdecode import decode_qr
    from tests.bot.test_qrdecode import PAYLOAD, PHOTO_SIZE, photo

    t0 = time.perf_counter()
    with_code = photo([PAYLOAD])
    without_code = photo([])
    made = time.perf_counter() - t0
    with Image.open(io.BytesIO(with_code)) as image:
        size = image.size
    walls, cpus, found = _timed(lambda: decode_qr(with_code), opts.qr_runs)
    walls_none, cpus_none, found_none = _timed(lambda: decode_qr(without_code), opts.qr_runs)
    return {
        "decode_ms_median": _ms(statistics.median(walls)),
        "decode_ms_min": _ms(min(walls)),
        "decode_ms_max": _ms(max(walls)),
        "decode_cpu_ms_median": _ms(statistics.median(cpus)),
        "decoded_ok": found == [PAYLOAD],
        "no_code_decode_ms_median": _ms(statistics.median(walls_none)),
        "no_code_decode_cpu_ms_median": _ms(statistics.median(cpus_none)),
        "no_code_found_nothing": found_none == [],
        "runs": opts.qr_runs,
        "photo_size": list(size),
        "photo_megapixels": round(size[0] * size[1] / 1e6, 1),
        "photo_bytes": len(with_code),
        "expected_size": list(PHOTO_SIZE),
        "photos_made_s": round(made, 2),
    }


def receipt_bench(payload: dict[str, Any], runs: int) -> dict[str, Any]:
    """Rendering the purchase's receipt PNG, as the Telegram/WhatsApp adapters do."""
    from bot.receipts import render_receipt

    receipt = receipt_from(payload["receipt"])
    language = str(payload.get("language", i18n.DEFAULT_LANGUAGE))
    walls, cpus, png = _timed(lambda: render_receipt(receipt, language), runs)
    return {
        "render_ms_median": _ms(statistics.median(walls)),
        "render_cpu_ms_median": _ms(statistics.median(cpus)),
        "png_bytes": len(png),
        "runs": runs,
    }


# --------------------------------------------------------------------------- output
def human(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"flows benchmark: {cfg['customers']} customers x {cfg['rounds']} purchase(s) of "
        f"{cfg['product']} ({cfg['messages_per_purchase']} messages), {cfg['concurrency']} "
        f"in flight, {cfg['warmup']} warm-up customers ({result['elapsed_s']}s in all; "
        f"{cfg['cpus']} CPUs, load {cfg['loadavg_1m_before']} before, "
        f"{cfg['loadavg_1m_after']} after)"
    ]
    for name in ("sqlite", "postgres"):
        r = result.get(name) or {}
        if r.get("skipped"):
            lines.append(f"{name}: skipped")
            continue
        if "error" in r:
            lines.append(f"{name}: ERROR {r['error']}")
            continue
        pm = r["per_message"]
        lines += [
            f"{name}",
            f"  purchases/s (argon2 {r['argon2']})  {r['purchases_per_s']:>8}"
            f"   p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms per message",
            f"  purchases/s (production PIN)  {r.get('purchases_per_s_production_pin')!s:>8}"
            f"   p99 {r.get('p99_ms_production_pin')} ms",
            f"  per message: {pm['db_reads']} reads, {pm['db_writes']} writes, "
            f"{pm['statements']} statements; CPU {r['cpu_ms_per_message']} ms",
            f"  step p99 ms: {r['step_p99_ms']}",
            f"  failed {r['failed_purchases']}, ledger clean {r['ledger_clean']}, "
            f"balances ok {r['balances_ok']}, bill movements {r['bill_movements']}",
        ]
    q = result.get("qr") or {}
    if "decode_ms_median" in q:
        lines.append(
            f"QR decode, {q['photo_megapixels']} MP JPEG: median {q['decode_ms_median']} ms "
            f"(CPU {q['decode_cpu_ms_median']} ms, read ok {q['decoded_ok']}); without a code "
            f"{q['no_code_decode_ms_median']} ms"
        )
    elif q:
        lines.append(f"QR decode: {q}")
    rc = result.get("receipt") or {}
    if "render_ms_median" in rc:
        lines.append(f"receipt PNG render: median {rc['render_ms_median']} ms")
    lines.append(f"targets: {json.dumps(result.get('targets', {}))}")
    return "\n".join(lines)


def _git_commit() -> str | None:
    """The checked-out commit (``+dirty`` when the work tree has changes), if any."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            cwd=ROOT,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            cwd=ROOT,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


async def amain(opts: Options) -> tuple[dict[str, Any], bool]:
    result: dict[str, Any] = {}
    failed = False
    receipt: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="kaspro-bench-flows-") as tmp:
        runners: tuple[tuple[str, bool, Callable[[], Any]], ...] = (
            ("sqlite", opts.skip_sqlite, lambda: bench_sqlite(opts, Path(tmp))),
            ("postgres", opts.skip_postgres, lambda: bench_postgres(opts)),
        )
        for name, skip, run in runners:
            if skip:
                result[name] = {"skipped": True}
                continue
            try:
                r = await run()
            except Exception as exc:
                log.exception("%s benchmark failed", name)
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
                failed = True
                continue
            receipt = r.pop("_receipt", None) or receipt
            result[name] = r
            failed = failed or failed_run(r) or failed_run(r.get("production_pin") or r)
    if opts.skip_qr:
        result["qr"] = {"skipped": True}
        result["qr_decode_ms_median"] = None
        return result, failed
    try:  # CPU-bound, on an otherwise idle process
        result["qr"] = qr_bench(opts)
        result["qr_decode_ms_median"] = result["qr"]["decode_ms_median"]
        failed = failed or not result["qr"]["decoded_ok"]
    except Exception as exc:
        log.exception("QR benchmark failed")
        result["qr"] = {"error": f"{type(exc).__name__}: {exc}"}
        result["qr_decode_ms_median"] = None
        failed = True
    if receipt is not None:
        try:
            result["receipt"] = receipt_bench(receipt, opts.receipt_runs)
        except Exception as exc:
            log.exception("receipt benchmark failed")
            result["receipt"] = {"error": f"{type(exc).__name__}: {exc}"}
    return result, failed


def targets(result: dict[str, Any]) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {}
    q = result.get("qr_decode_ms_median")
    out["qr_decode_le_100ms_median"] = None if q is None else q <= TARGET_QR_MS
    for name in ("sqlite", "postgres"):
        r = result.get(name) or {}
        if "purchases_per_s" in r:
            out[f"{name}_all_purchases_ok"] = not failed_run(r)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    opts, as_json = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        force=True,
    )
    for noisy in ("alembic", "kaspro.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.monotonic()
    load_before = _loadavg()
    result, failed = asyncio.run(amain(opts))
    result["targets"] = targets(result)
    result["config"] = {
        "customers": opts.customers,
        "concurrency": opts.concurrency,
        "warmup": opts.warmup,
        "rounds": opts.rounds,
        "product": PRODUCT,
        "messages_per_purchase": MESSAGES_PER_PURCHASE,
        "steps": list(STEPS),
        "cheap_security": CHEAP_SECURITY,
        "qr_runs": opts.qr_runs,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": _git_commit(),
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": _loadavg(),
    }
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    if as_json:
        print(json.dumps(result, separators=(",", ":"), default=str), flush=True)
    else:
        print(human(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
