"""Conversation engine throughput: simulated customers chatting through ``Engine.handle``.

``python bench/engine.py --json`` prints one JSON line::

    {"sqlite": {"messages_per_s", "p50_ms", "p99_ms", "pin_hash_ms", ...},
     "postgres": {...the same...},
     "ptb_baseline": {"messages_per_s", ...}, "targets": {...}, "config": {...}}

What is measured, per database (no HTTP, no channel: the engine is called directly):

* ``--customers`` simulated customers, each its own console chat, each sending
  ``halo`` → [register] → phone (unique, 0812 + 8 digits) → the OTP read from the recorded
  SMS → first name → last name (or ``-``) → ``17-08-1990`` → unique email → PIN ``864209``
  → the PIN again → [balance]: 11 messages. Messages of one chat are sequential, up to
  ``--concurrency`` chats are in flight at once and interleave. Replies go to
  ``bot.convo.RecordingChannel``, OTPs to ``RecordingOtpSender``; a customer counts as
  done when the engine said the registration's "done" text and then showed a balance of
  ``Rp 0``. ``--warmup`` customers run first, untimed (catalogue, Babel data, pools).
* The run is made twice, each on a fresh database: with the production argon2id
  parameters (``config.yaml``, the default ``Settings``), which give ``messages_per_s``,
  ``p50_ms`` and ``p99_ms`` (latency of one ``Engine.handle``, replies delivered), and
  with cheap PIN hashing (``pin_hash_memory_kib=1024, pin_hash_time_cost=1``), which
  gives ``messages_per_s_cheap_pin``: the engine's own overhead.
* ``pin_hash_ms``: median of ``--pin-samples`` calls of ``wallet.pins.hash()`` with the
  production parameters, one at a time on an idle process. ``pin_hash_share``: the CPU
  time spent inside argon2 (hash and verify) during the production run, over the CPU time
  of the whole process in that run; ``pin_hash_wait_share``: the time messages spent
  awaiting a PIN hash or verify, over the sum of all message latencies.
* ``per_message``: database work per message in the timed run: ``db.read`` and
  ``db.write`` calls (on SQLite each is a thread hop; writes are group-committed), the
  SQL statements executed, by verb, and the time inside the transaction functions versus
  the time awaiting them (hop, queueing, BEGIN/COMMIT).

``ptb_baseline``: python-telegram-bot's own ``ConversationHandler`` (5 states: phone, OTP,
name, birth date + email, PIN → end; the greeting and balance are plain handlers) in an
``Application`` without persistence, fed the same number of text updates for the same
number of chats, sequential per chat and interleaved the same way. Handlers do trivial
work and keep their replies in a list (nothing is sent); the bot's one request at
``initialize()`` (``getMe``) is answered by an in-process request object, so nothing
touches the network. ``messages_per_s`` counts only the time inside
``Application.process_update`` (building the ``Update`` from JSON is left out, as the
engine's HTTP side is); ``messages_per_s_wall`` includes the harness.

Targets (from the issue): >= 1,000 messages/s on SQLite with persistence, and >= 25% of
python-telegram-bot's in-memory rate; ``targets`` says which are met, for the production
and the cheap PIN runs.

The SQLite databases are temporary files; PostgreSQL (``--pg-host``, trust auth) gets a
throwaway database ``kaspro_bench_engine``, recreated for each run and dropped at the end.
Logs go to stderr. Exit status 1 when a customer failed or a backend errored.
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import re
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as ``python bench/engine.py``, this file's folder comes first on sys.path, where
# bench/flows.py would shadow the project's ``flows`` package: put the root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")
]

import asyncpg
import telegram
from sqlalchemy import Connection, event, func, select
from sqlalchemy.engine import Engine as SqlEngine
from telegram import Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.request import BaseRequest, RequestData

from bot import i18n
from bot.convo import RecordingChannel, RecordingOtpSender
from bot.engine import Engine, Inbound
from storage.db import Database
from storage.migrate import upgrade
from storage.schema import customers as customers_table
from wallet.config import Settings, load_settings
from wallet.phone import normalize_phone
from wallet.service import Wallet

log = logging.getLogger("kaspro.bench.engine")

CHANNEL = "console"
PIN = "864209"
BIRTH_DATE = "17-08-1990"
FIRST_NAME = "Budi"
LAST_NAME = "Santoso"
CHEAP_SECURITY = {"pin_hash_memory_kib": 1024, "pin_hash_time_cost": 1}
PG_DB = "kaspro_bench_engine"
STEPS = (
    "halo",
    "register",
    "phone",
    "otp",
    "first_name",
    "last_name",
    "birth_date",
    "email",
    "pin",
    "pin_again",
    "balance",
)
MESSAGES_PER_CUSTOMER = len(STEPS)
OTP_RE = re.compile(r"\b(\d{6})\b")

TARGET_SQLITE_PER_S = 1_000
TARGET_VS_PTB = 0.25


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Options:
    customers: int
    concurrency: int
    warmup: int
    pin_samples: int
    pool_size: int | None
    skip_sqlite: bool
    skip_postgres: bool
    skip_ptb: bool
    ptb_rounds: int
    skip_production_pin: bool
    pg_host: str
    pg_port: int
    pg_user: str
    message_timeout: float
    run_timeout: float


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, bool]:
    p = argparse.ArgumentParser(description="Conversation engine throughput (no HTTP).")
    p.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    p.add_argument("--customers", type=int, default=200, help="simulated customers (chats)")
    p.add_argument("--concurrency", type=int, default=50, help="chats in flight at once")
    p.add_argument("--warmup", type=int, default=10, help="untimed customers before each run")
    p.add_argument("--pin-samples", type=int, default=15, help="wallet.pins.hash() calls timed")
    p.add_argument(
        "--pool-size", type=int, default=None, help="database pool size (default: config.yaml)"
    )
    p.add_argument("--skip-sqlite", action="store_true")
    p.add_argument("--skip-postgres", action="store_true")
    p.add_argument("--skip-ptb", action="store_true", help="no python-telegram-bot baseline")
    p.add_argument("--ptb-rounds", type=int, default=5, help="baseline rounds (best counts)")
    p.add_argument(
        "--skip-production-pin",
        action="store_true",
        help="only the cheap-PIN run (quick look at the engine's own overhead)",
    )
    p.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    p.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    p.add_argument("--message-timeout", type=float, default=60.0, help="seconds per message")
    p.add_argument("--run-timeout", type=float, default=1800.0, help="seconds per run")
    a = p.parse_args(argv)
    if a.customers < 1:
        p.error("--customers must be at least 1")
    if a.concurrency < 1:
        p.error("--concurrency must be at least 1")
    if a.warmup < 0 or a.pin_samples < 1 or a.ptb_rounds < 1:
        p.error("--warmup must be >= 0, --pin-samples and --ptb-rounds >= 1")
    opts = Options(
        customers=a.customers,
        concurrency=a.concurrency,
        warmup=a.warmup,
        pin_samples=a.pin_samples,
        pool_size=a.pool_size,
        skip_sqlite=a.skip_sqlite,
        skip_postgres=a.skip_postgres,
        skip_ptb=a.skip_ptb,
        ptb_rounds=a.ptb_rounds,
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


def _ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    if not a or not b:
        return None
    return round(a / b, digits)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --------------------------------------------------------------------------- instrumentation
@dataclass
class Meter:
    """What one run did, gathered from the outside (the engine is not changed).

    Lists, not counters: ``list.append`` is atomic across the worker threads."""

    reads: list[tuple[float, float]] = field(default_factory=list)  # (awaited, inside fn) s
    writes: list[tuple[float, float]] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)  # verb of each SQL statement
    pin_cpu: list[float] = field(default_factory=list)  # thread CPU s inside argon2
    pin_wait: list[tuple[str, float]] = field(default_factory=list)  # ("hash"|"verify", s)
    on: bool = True

    def reset(self) -> None:
        self.reads.clear()
        self.writes.clear()
        self.statements.clear()
        self.pin_cpu.clear()
        self.pin_wait.clear()


class _CpuTimedArgon2:
    """Wraps the argon2 ``PasswordHasher`` of a ``PinHasher``: thread CPU per call."""

    def __init__(self, inner: Any, meter: Meter) -> None:
        self._inner = inner
        self._meter = meter

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args)
        finally:
            self._meter.pin_cpu.append(time.thread_time() - started)

    def hash(self, *args: Any) -> Any:
        return self._timed(self._inner.hash, *args)

    def verify(self, *args: Any) -> Any:
        return self._timed(self._inner.verify, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def instrument(wallet: Wallet, meter: Meter) -> Callable[[], None]:
    """Count and time the engine's database calls, SQL statements and PIN hashing by
    wrapping the wallet's ``Database`` and ``PinHasher`` instances. Returns the undo."""
    db = wallet.db
    orig_read, orig_write = db.read, db.write

    def timed_fn(fn: Callable[..., Any], box: list[float]) -> Callable[..., Any]:
        def run(conn: Connection, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(conn, *args, **kwargs)
            finally:
                box.append(time.perf_counter() - started)

        return run

    async def read(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        box: list[float] = []
        started = time.perf_counter()
        try:
            return await orig_read(timed_fn(fn, box), *args, **kwargs)
        finally:
            meter.reads.append((time.perf_counter() - started, sum(box)))

    async def write(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        box: list[float] = []
        started = time.perf_counter()
        try:
            return await orig_write(timed_fn(fn, box), *args, **kwargs)
        finally:
            meter.writes.append((time.perf_counter() - started, sum(box)))

    db.read = read  # type: ignore[method-assign]
    db.write = write  # type: ignore[method-assign]

    pins = wallet.pins
    orig_hash, orig_verify = pins.hash, pins.verify

    async def pin_hash(pin: str) -> str:
        started = time.perf_counter()
        try:
            return await orig_hash(pin)
        finally:
            meter.pin_wait.append(("hash", time.perf_counter() - started))

    async def pin_verify(stored: str, pin: str) -> bool:
        started = time.perf_counter()
        try:
            return await orig_verify(stored, pin)
        finally:
            meter.pin_wait.append(("verify", time.perf_counter() - started))

    pins.hash = pin_hash  # type: ignore[method-assign]
    pins.verify = pin_verify  # type: ignore[method-assign]
    argon2 = getattr(pins, "_hasher", None)
    if argon2 is not None:
        pins._hasher = _CpuTimedArgon2(argon2, meter)  # type: ignore[assignment]

    def on_statement(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        if meter.on:
            meter.statements.append((statement.lstrip().split(None, 1) or [""])[0].upper())

    event.listen(SqlEngine, "before_cursor_execute", on_statement)

    def undo() -> None:
        event.remove(SqlEngine, "before_cursor_execute", on_statement)

    return undo


# --------------------------------------------------------------------------- customers
class CustomerFailed(Exception):
    pass


@dataclass
class RunResult:
    latencies: list[float] = field(default_factory=list)  # s per Engine.handle
    by_step: dict[str, list[float]] = field(default_factory=dict)
    messages: int = 0
    done: int = 0
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0


class Simulation:
    """Drives simulated customers through one engine."""

    def __init__(self, engine: Engine, opts: Options) -> None:
        self.engine = engine
        self.opts = opts
        self.channel: RecordingChannel = engine.channels[CHANNEL]  # type: ignore[assignment]
        self.sms: RecordingOtpSender = engine.otp_sender  # type: ignore[assignment]
        self.done_text = i18n.text(i18n.DEFAULT_LANGUAGE, "reg.done", {"name": FIRST_NAME})
        self.zero = i18n.rupiah(0)

    def _said(self, mark: int, chat_id: str) -> list[str]:
        return [
            str(p.get("text", ""))
            for cid, p in self.channel.sent[mark:]
            if cid == chat_id and p.get("type") == "text"
        ]

    async def customer(self, index: int, result: RunResult | None) -> None:
        chat_id = f"bench-{index}"
        phone = f"0812{10_000_000 + index:08d}"
        e164 = normalize_phone(phone)
        n = 0

        async def send(step: str, **kw: Any) -> int:
            nonlocal n
            n += 1
            mark = len(self.channel.sent)
            msg = Inbound(CHANNEL, chat_id, f"{chat_id}-{n}", **kw)
            started = time.perf_counter()
            async with asyncio.timeout(self.opts.message_timeout):
                await self.engine.handle(msg)
            took = time.perf_counter() - started
            if result is not None:
                result.messages += 1
                result.latencies.append(took)
                result.by_step.setdefault(step, []).append(took)
            return mark

        await send("halo", text="halo")
        await send("register", choice="register")
        sms_mark = len(self.sms.sent)
        await send("phone", text=phone)
        codes = [
            m.group(1)
            for to, body, _code in self.sms.sent[sms_mark:]
            if to == e164 and (m := OTP_RE.search(body))
        ]
        if not codes:
            raise CustomerFailed("no OTP was sent")
        await send("otp", text=codes[-1])
        await send("first_name", text=FIRST_NAME)
        await send("last_name", text=LAST_NAME if index % 2 == 0 else "-")
        await send("birth_date", text=BIRTH_DATE)
        await send("email", text=f"bench{index}@example.com")
        await send("pin", text=PIN)
        mark = await send("pin_again", text=PIN)
        if not any(self.done_text in t for t in self._said(mark, chat_id)):
            raise CustomerFailed(
                "registration not confirmed: " + " | ".join(self._said(mark, chat_id))[:300]
            )
        mark = await send("balance", choice="balance")
        if not any(self.zero in t for t in self._said(mark, chat_id)):
            raise CustomerFailed("no balance shown: " + " | ".join(self._said(mark, chat_id))[:300])

    async def run(self, indices: range, result: RunResult | None) -> None:
        """Customers ``indices``, at most ``concurrency`` at once."""
        todo = iter(indices)

        async def worker() -> None:
            for index in todo:
                try:
                    await self.customer(index, result)
                except Exception as exc:  # a benchmark counts failures instead of stopping
                    if result is None:
                        raise
                    result.failed += 1
                    result.failures[type(exc).__name__] += 1
                    if len(result.samples) < 5:
                        result.samples.append(f"customer {index}: {type(exc).__name__}: {exc}")
                else:
                    if result is not None:
                        result.done += 1

        workers = [
            asyncio.create_task(worker()) for _ in range(min(self.opts.concurrency, len(indices)))
        ]
        try:
            async with asyncio.timeout(self.opts.run_timeout):
                await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


# --------------------------------------------------------------------------- one engine run
def _count_customers(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(customers_table)) or 0)


async def pin_timings(wallet: Wallet, samples: int) -> dict[str, Any]:
    """``wallet.pins.hash()`` and ``verify()``, one at a time, median of ``samples``."""
    hashes, verifies = [], []
    stored = await wallet.pins.hash(PIN)  # also warms the thread
    for _ in range(samples):
        started = time.perf_counter()
        stored = await wallet.pins.hash(PIN)
        hashes.append(time.perf_counter() - started)
        started = time.perf_counter()
        ok = await wallet.pins.verify(stored, PIN)
        verifies.append(time.perf_counter() - started)
        if not ok:
            raise RuntimeError("a PIN did not verify against its own hash")
    return {
        "pin_hash_ms": _ms(statistics.median(hashes)),
        "pin_verify_ms": _ms(statistics.median(verifies)),
        "pin_hash_samples": samples,
    }


def argon2_params(settings: Settings) -> dict[str, int]:
    s = settings.security
    return {
        "time_cost": s.pin_hash_time_cost,
        "memory_kib": s.pin_hash_memory_kib,
        "parallelism": s.pin_hash_parallelism,
    }


async def engine_run(url: str, settings: Settings, opts: Options, label: str) -> dict[str, Any]:
    """Migrate the (fresh) database at ``url`` and run warm-up then timed customers."""
    await upgrade(url)
    pool_size = opts.pool_size or settings.db.pool_size
    db = Database.from_url(
        url, pool_size=pool_size, busy_timeout_ms=settings.db.sqlite_busy_timeout_ms
    )
    wallet = Wallet(db, settings, secret_key=b"kaspro-bench-engine")
    channel, sms = RecordingChannel(), RecordingOtpSender()
    engine = Engine(
        wallet,
        idle_minutes=settings.idle_timeout_minutes,
        channels={CHANNEL: channel},
        otp_sender=sms,
    )
    meter = Meter()
    undo = instrument(wallet, meter)
    sim = Simulation(engine, opts)
    result = RunResult()
    try:
        timings = await pin_timings(wallet, opts.pin_samples)
        if opts.warmup:
            await sim.run(range(opts.customers, opts.customers + opts.warmup), None)
        meter.reset()
        log.info(
            "%s: %d customers, %d in flight, argon2 %s",
            label, opts.customers, opts.concurrency, argon2_params(settings),
        )  # fmt: skip
        cpu0, t0 = time.process_time(), time.perf_counter()
        await sim.run(range(opts.customers), result)
        result.wall = time.perf_counter() - t0
        result.cpu = time.process_time() - cpu0
        meter.on = False
        registered = await db.read(_count_customers)
        if registered != result.done + opts.warmup:
            result.failures["customers_in_db_mismatch"] += 1
            result.samples.append(
                f"{registered} customers in the database, expected {result.done + opts.warmup}"
            )
    finally:
        undo()
        await db.dispose()
    log.info(
        "%s: %.0f messages/s, p50 %s ms, p99 %s ms, %d failed",
        label, result.messages / result.wall if result.wall else 0,
        pct(result.latencies, 0.5), pct(result.latencies, 0.99), result.failed,
    )  # fmt: skip
    for sample in result.samples:
        log.warning("%s: %s", label, sample)
    return summarize(result, meter, timings, settings, registered, opts, pool_size)


def summarize(
    r: RunResult,
    m: Meter,
    timings: dict[str, Any],
    settings: Settings,
    registered: int,
    opts: Options,
    pool_size: int,
) -> dict[str, Any]:
    n = max(r.messages, 1)
    verbs = Counter(m.statements)
    pin_cpu = sum(m.pin_cpu)
    pin_wait = sum(s for _, s in m.pin_wait)
    read_await, read_fn = sum(a for a, _ in m.reads), sum(f for _, f in m.reads)
    write_await, write_fn = sum(a for a, _ in m.writes), sum(f for _, f in m.writes)
    return {
        "messages_per_s": round(r.messages / r.wall, 1) if r.wall else 0.0,
        "p50_ms": pct(r.latencies, 0.50),
        "p99_ms": pct(r.latencies, 0.99),
        "max_ms": pct(r.latencies, 1.0),
        **timings,
        "pin_hash_share": round(pin_cpu / r.cpu, 3) if r.cpu else None,
        "pin_hash_wait_share": round(pin_wait / sum(r.latencies), 3) if r.latencies else None,
        "pin_hash_calls": Counter(k for k, _ in m.pin_wait),
        "pin_hash_cpu_s": round(pin_cpu, 3),
        "messages": r.messages,
        "customers": opts.customers,
        "customers_done": r.done,
        "failed_customers": r.failed + r.failures["customers_in_db_mismatch"],
        "failures": dict(r.failures),
        "customers_in_db": registered,
        "wall_s": round(r.wall, 3),
        "cpu_s": round(r.cpu, 3),
        "cpu_ms_per_message": round(r.cpu / n * 1000, 3),
        "cpu_ms_per_message_without_pin": round((r.cpu - pin_cpu) / n * 1000, 3),
        "cpu_utilisation": round(r.cpu / r.wall, 2) if r.wall else None,
        "per_message": {
            "db_reads": round(len(m.reads) / n, 3),
            "db_writes": round(len(m.writes) / n, 3),
            "statements": round(len(m.statements) / n, 3),
            "statements_by_verb": {k: round(v / n, 3) for k, v in verbs.most_common()},
            "read_awaited_ms": round(read_await / n * 1000, 3),
            "read_inside_ms": round(read_fn / n * 1000, 3),
            "write_awaited_ms": round(write_await / n * 1000, 3),
            "write_inside_ms": round(write_fn / n * 1000, 3),
            "pin_awaited_ms": round(pin_wait / n * 1000, 3),
        },
        "step_p50_ms": {step: pct(v, 0.5) for step, v in r.by_step.items()},
        "step_p99_ms": {step: pct(v, 0.99) for step, v in r.by_step.items()},
        "argon2": argon2_params(settings),
        "pool_size": pool_size,
    }


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
    modes: list[tuple[str, dict[str, int] | None]] = []
    if not opts.skip_production_pin:
        modes.append(("production_pin", None))  # config.yaml's argon2id parameters
    modes.append(("cheap_pin", CHEAP_SECURITY))
    return modes


def combine(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's keys first (from the production-PIN run), then the cheap-PIN figures."""
    main = runs.get("production_pin") or runs["cheap_pin"]
    cheap = runs["cheap_pin"]
    out: dict[str, Any] = {
        "messages_per_s": main["messages_per_s"],
        "p50_ms": main["p50_ms"],
        "p99_ms": main["p99_ms"],
        "pin_hash_ms": main["pin_hash_ms"],
        "pin_hash_share": main["pin_hash_share"],
        "messages_per_s_cheap_pin": cheap["messages_per_s"],
        "p50_ms_cheap_pin": cheap["p50_ms"],
        "p99_ms_cheap_pin": cheap["p99_ms"],
        "pin_hash_ms_cheap_pin": cheap["pin_hash_ms"],
        "pin_verify_ms": main["pin_verify_ms"],
        "pin_hash_wait_share": main["pin_hash_wait_share"],
        "messages": main["messages"],
        "customers": main["customers"],
        "failed_customers": sum(r["failed_customers"] for r in runs.values()),
        "cpu_ms_per_message": main["cpu_ms_per_message"],
        "cpu_ms_per_message_cheap_pin": cheap["cpu_ms_per_message"],
        "per_message": cheap["per_message"],
        "argon2": main["argon2"],
    }
    if "production_pin" not in runs:
        out["note"] = "--skip-production-pin: every figure is from the cheap-PIN run"
    out["runs"] = runs
    return out


async def bench_sqlite(opts: Options, tmp: Path) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {}
    for mode, security in _modes(opts):
        url = f"sqlite:///{tmp / f'kaspro-{mode}.db'}"
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


# --------------------------------------------------------------------------- PTB baseline
BOT_USER = {
    "id": 123,
    "is_bot": True,
    "first_name": "KasPro bench",
    "username": "kaspro_bench_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


class OfflineRequest(BaseRequest):
    """A Bot API "connection" that answers ``getMe`` in-process and refuses the rest."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @property
    def read_timeout(self) -> float | None:
        return 5.0

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1]
        self.calls.append(endpoint)
        if endpoint == "getMe":
            return 200, json.dumps({"ok": True, "result": BOT_USER}).encode()
        body = {"ok": False, "error_code": 400, "description": "offline benchmark: no network"}
        return 400, json.dumps(body).encode()


PHONE, OTP, NAME, DETAILS, PIN_STATE = range(5)
PTB_PHONE_RE = re.compile(r"^(?:\+?62|0)8\d{8,11}$")
PTB_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.I)


class PtbBot:
    """A 5-state registration in a ConversationHandler; replies are kept, not sent."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, str]] = []
        self.last: dict[int, str] = {}  # chat id → the latest reply
        self.sms: dict[int, str] = {}
        self.errors: Counter[str] = Counter()

    def reply(self, update: Update, text: str) -> None:
        assert update.effective_chat is not None
        self.replies.append((update.effective_chat.id, text))
        self.last[update.effective_chat.id] = text

    @staticmethod
    def _text(update: Update) -> str:
        assert update.message is not None and update.message.text is not None
        return update.message.text.strip()

    @staticmethod
    def _data(context: ContextTypes.DEFAULT_TYPE) -> dict[Any, Any]:
        assert context.user_data is not None
        return context.user_data

    async def menu(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.reply(update, "Halo! Pilih salah satu: 1. Daftar 2. Masuk 3. Saldo")

    async def ask_phone(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        self.reply(update, "Kirim nomor HP yang mau didaftarkan.")
        return PHONE

    async def phone(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        text = self._text(update).replace(" ", "")
        if not PTB_PHONE_RE.match(text):
            self.reply(update, "Nomor HP tidak valid.")
            return PHONE
        data = self._data(context)
        data["phone"] = "+62" + text.lstrip("+").removeprefix("62").removeprefix("0")
        data["otp"] = f"{secrets.randbelow(10**6):06d}"
        assert update.effective_chat is not None
        self.sms[update.effective_chat.id] = data["otp"]
        self.reply(update, "Kode OTP sudah dikirim. Ketik 6 angkanya.")
        return OTP

    async def otp(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        if self._text(update) != self._data(context).get("otp"):
            self.reply(update, "Kode OTP salah.")
            return OTP
        self.reply(update, "Nama depan kamu?")
        return NAME

    async def name(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        data, text = self._data(context), self._text(update)
        if "first_name" not in data:
            data["first_name"] = text
            self.reply(update, "Nama belakang? (ketik - kalau tidak ada)")
            return NAME
        data["last_name"] = "" if text == "-" else text
        self.reply(update, "Tanggal lahir? (DD-MM-YYYY)")
        return DETAILS

    async def details(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        data, text = self._data(context), self._text(update)
        if "birth_date" not in data:
            try:
                data["birth_date"] = datetime.strptime(text, "%d-%m-%Y").date()
            except ValueError:
                self.reply(update, "Format tanggal: DD-MM-YYYY")
                return DETAILS
            self.reply(update, "Alamat email?")
            return DETAILS
        if not PTB_EMAIL_RE.match(text):
            self.reply(update, "Email tidak valid.")
            return DETAILS
        data["email"] = text.lower()
        self.reply(update, "Buat PIN 6 angka.")
        return PIN_STATE

    async def pin(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        data, text = self._data(context), self._text(update)
        if "pin" not in data:
            if not (len(text) == 6 and text.isdigit()):
                self.reply(update, "PIN harus 6 angka.")
                return PIN_STATE
            data["pin"] = text
            self.reply(update, "Ketik PIN sekali lagi.")
            return PIN_STATE
        if text != data.pop("pin"):
            self.reply(update, "PIN tidak sama. Buat PIN 6 angka.")
            return PIN_STATE
        data["registered"] = True
        self.reply(update, f"Selamat, {data['first_name']}! Akun kamu sudah aktif.")
        return ConversationHandler.END

    async def balance(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not self._data(context).get("registered"):
            self.reply(update, "Daftar dulu, ya.")
            return
        self.reply(update, "Saldo: Rp 0")

    async def cancel(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        self.reply(update, "Dibatalkan.")
        return ConversationHandler.END

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.errors[type(context.error).__name__] += 1

    def build(self) -> Application[Any, Any, Any, Any, Any, Any]:
        app = (
            ApplicationBuilder()
            .token("123:ABC")
            .updater(None)
            .request(OfflineRequest())
            .get_updates_request(OfflineRequest())
            .build()
        )
        text = filters.TEXT & ~filters.COMMAND
        conv = ConversationHandler(
            entry_points=[MessageHandler(filters.Regex(r"^register$"), self.ask_phone)],
            states={
                PHONE: [MessageHandler(text, self.phone)],
                OTP: [MessageHandler(text, self.otp)],
                NAME: [MessageHandler(text, self.name)],
                DETAILS: [MessageHandler(text, self.details)],
                PIN_STATE: [MessageHandler(text, self.pin)],
            },
            fallbacks=[MessageHandler(filters.Regex(r"^(batal|cancel)$"), self.cancel)],
        )
        app.add_handler(conv)
        app.add_handler(MessageHandler(filters.Regex(r"^halo$"), self.menu))
        app.add_handler(MessageHandler(filters.Regex(r"^balance$"), self.balance))
        app.add_error_handler(self.on_error)
        return app


@dataclass
class PtbRound:
    processing: list[float]  # s inside Application.process_update, per update
    wall: float
    cpu: float
    failed: Counter[str]
    samples: list[str]
    handler_errors: Counter[str]

    @property
    def per_s(self) -> float:
        inside = sum(self.processing)
        return len(self.processing) / inside if inside else 0.0


async def ptb_round(opts: Options) -> PtbRound:
    """One fresh Application: warm-up chats, then ``--customers`` timed chats."""
    bot = PtbBot()
    app = bot.build()
    await app.initialize()  # getMe answered by OfflineRequest
    counter = {"update_id": 0}
    processing: list[float] = []
    failed: Counter[str] = Counter()
    samples: list[str] = []
    date = int(datetime.now(UTC).timestamp())

    async def customer(index: int, timed: bool) -> None:
        chat_id = 10_000_000 + index
        user = {"id": chat_id, "is_bot": False, "first_name": FIRST_NAME}
        chat = {"id": chat_id, "type": "private", "first_name": FIRST_NAME}
        texts = [
            "halo",
            "register",
            f"0812{10_000_000 + index:08d}",
            None,  # the OTP, read from the "SMS"
            FIRST_NAME,
            LAST_NAME if index % 2 == 0 else "-",
            BIRTH_DATE,
            f"bench{index}@example.com",
            PIN,
            PIN,
            "balance",
        ]
        for n, text in enumerate(texts, start=1):
            if text is None:
                text = bot.sms.get(chat_id, "")
            counter["update_id"] += 1
            data = {
                "update_id": counter["update_id"],
                "message": {
                    "message_id": n,
                    "date": date,
                    "chat": chat,
                    "from": user,
                    "text": text,
                },
            }
            update = Update.de_json(data, app.bot)
            started = time.perf_counter()
            await app.process_update(update)
            if timed:
                processing.append(time.perf_counter() - started)
            await asyncio.sleep(0)  # let the other chats in, as the engine's awaits do
        if bot.last.get(chat_id) != "Saldo: Rp 0":
            raise CustomerFailed(f"PTB chat {chat_id} ended with {bot.last.get(chat_id)!r}")

    async def run(indices: range, timed: bool) -> None:
        todo = iter(indices)

        async def worker() -> None:
            for index in todo:
                try:
                    await customer(index, timed)
                except CustomerFailed as exc:
                    failed["CustomerFailed"] += 1
                    if len(samples) < 5:
                        samples.append(str(exc)[:300])

        workers = [
            asyncio.create_task(worker()) for _ in range(min(opts.concurrency, len(indices)))
        ]
        try:
            async with asyncio.timeout(opts.run_timeout):
                await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    try:
        await run(range(opts.customers, opts.customers + max(opts.warmup, 1)), timed=False)
        failed.clear()
        samples.clear()
        cpu0, t0 = time.process_time(), time.perf_counter()
        await run(range(opts.customers), timed=True)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        await app.shutdown()
    return PtbRound(processing, wall, cpu, failed, samples, bot.errors)


async def ptb_baseline(opts: Options) -> dict[str, Any]:
    """``--ptb-rounds`` rounds; the fastest one is the figure (the strictest baseline: a
    round is a fraction of a second, so other load on the machine shows up as noise)."""
    rounds = [await ptb_round(opts) for _ in range(opts.ptb_rounds)]
    best = max(rounds, key=lambda r: r.per_s)
    messages = len(best.processing)
    return {
        "messages_per_s": round(best.per_s, 1),
        "messages_per_s_wall": round(messages / best.wall, 1) if best.wall else 0.0,
        "messages_per_s_median_round": round(statistics.median(r.per_s for r in rounds), 1),
        "rounds": len(rounds),
        "p50_ms": pct(best.processing, 0.5),
        "p99_ms": pct(best.processing, 0.99),
        "messages": messages,
        "customers": opts.customers,
        "failed_customers": sum(sum(r.failed.values()) for r in rounds),
        "failure_samples": [s for r in rounds for s in r.samples][:5],
        "handler_errors": dict(sum((r.handler_errors for r in rounds), Counter())),
        "cpu_ms_per_message": round(best.cpu / max(messages, 1) * 1000, 4),
        "states": 5,
        "persistence": False,
        "python_telegram_bot": telegram.__version__,
    }


# --------------------------------------------------------------------------- output
def human(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"engine benchmark: {cfg['customers']} customers x {cfg['messages_per_customer']} "
        f"messages, {cfg['concurrency']} in flight, {cfg['warmup']} warm-up customers "
        f"({result['elapsed_s']}s in all; {cfg['cpus']} CPUs, load {cfg['loadavg_1m_before']} "
        f"before, {cfg['loadavg_1m_after']} after)"
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
            f"  messages/s (argon2 {r['argon2']})  {r['messages_per_s']:>9}"
            f"   p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms",
            f"  messages/s (cheap PIN)             {r['messages_per_s_cheap_pin']:>9}"
            f"   p50 {r['p50_ms_cheap_pin']} ms  p99 {r['p99_ms_cheap_pin']} ms",
            f"  pin hash {r['pin_hash_ms']} ms (verify {r['pin_verify_ms']} ms), "
            f"share of CPU {r['pin_hash_share']}, of latency {r['pin_hash_wait_share']}",
            f"  vs python-telegram-bot             {r.get('ratio_vs_ptb')!s:>9}"
            f"   (cheap PIN {r.get('ratio_vs_ptb_cheap_pin')})",
            f"  per message (cheap PIN): {pm['db_reads']} reads, {pm['db_writes']} writes, "
            f"{pm['statements']} statements {pm['statements_by_verb']}",
            f"  CPU per message {r['cpu_ms_per_message']} ms "
            f"(cheap PIN {r['cpu_ms_per_message_cheap_pin']} ms); "
            f"failed customers {r['failed_customers']}",
        ]
    p = result.get("ptb_baseline") or {}
    if p.get("skipped"):
        lines.append("python-telegram-bot: skipped")
    elif "error" in p:
        lines.append(f"python-telegram-bot: ERROR {p['error']}")
    elif p:
        lines.append(
            f"python-telegram-bot {p['python_telegram_bot']} ConversationHandler in memory: "
            f"{p['messages_per_s']} messages/s inside process_update "
            f"({p['messages_per_s_wall']} with the harness), p99 {p['p99_ms']} ms"
        )
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
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def targets(result: dict[str, Any]) -> dict[str, bool | None]:
    sq = result.get("sqlite") or {}
    out: dict[str, bool | None] = {}
    if "messages_per_s" in sq:
        out["sqlite_ge_1000_per_s"] = sq["messages_per_s"] >= TARGET_SQLITE_PER_S
        out["sqlite_ge_1000_per_s_cheap_pin"] = (
            sq["messages_per_s_cheap_pin"] >= TARGET_SQLITE_PER_S
        )
    for name in ("sqlite", "postgres"):
        r = result.get(name) or {}
        if r.get("ratio_vs_ptb") is not None:
            out[f"{name}_ge_25pct_of_ptb"] = r["ratio_vs_ptb"] >= TARGET_VS_PTB
            out[f"{name}_ge_25pct_of_ptb_cheap_pin"] = r["ratio_vs_ptb_cheap_pin"] >= TARGET_VS_PTB
    return out


async def amain(opts: Options) -> tuple[dict[str, Any], bool]:
    result: dict[str, Any] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="kaspro-bench-engine-") as tmp:
        runners: tuple[tuple[str, bool, Callable[[], Any]], ...] = (
            ("sqlite", opts.skip_sqlite, lambda: bench_sqlite(opts, Path(tmp))),
            ("postgres", opts.skip_postgres, lambda: bench_postgres(opts)),
            ("ptb_baseline", opts.skip_ptb, lambda: ptb_baseline(opts)),
        )
        for name, skip, run in runners:
            if skip:
                result[name] = {"skipped": True}
                continue
            try:
                result[name] = await run()
            except Exception as exc:
                log.exception("%s benchmark failed", name)
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
                failed = True
            else:
                failed = failed or bool(result[name]["failed_customers"])
    ptb = (result.get("ptb_baseline") or {}).get("messages_per_s")
    for name in ("sqlite", "postgres"):
        r = result.get(name) or {}
        if "messages_per_s" in r:
            r["ratio_vs_ptb"] = _ratio(r["messages_per_s"], ptb)
            r["ratio_vs_ptb_cheap_pin"] = _ratio(r["messages_per_s_cheap_pin"], ptb)
    return result, failed


def main(argv: Sequence[str] | None = None) -> int:
    opts, as_json = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        force=True,
    )
    for noisy in ("telegram", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.monotonic()
    load_before = _loadavg()
    result, failed = asyncio.run(amain(opts))
    result["targets"] = targets(result)
    result["config"] = {
        "customers": opts.customers,
        "concurrency": opts.concurrency,
        "warmup": opts.warmup,
        "messages_per_customer": MESSAGES_PER_CUSTOMER,
        "steps": list(STEPS),
        "cheap_security": CHEAP_SECURITY,
        "pin_samples": opts.pin_samples,
        "ptb_rounds": opts.ptb_rounds,
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
