"""Ledger throughput: wallet-to-wallet transfers through the wallet core.

``python bench/ledger.py --json`` prints one JSON line::

    {"postgres": {"transfers_per_s", "p99_ms", "pgbench_tps", "hot_account_transfers_per_s",
                  "ratio_vs_pgbench", "hot_vs_spread", ...},
     "sqlite": {"transfers_per_s", "p99_ms", ...}, "config": {...}}

What is measured, per database:

* spread: ``Wallet.move(MoveMoney(kind=TRANSFER, source=CustomerParty(a),
  destination=CustomerParty(b)))`` between random pairs of ``--wallets`` Premium wallets,
  ``--clients`` concurrent clients for ``--seconds``. Once as asyncio tasks in one process
  (``_1proc``) and once split across two worker processes, each with its own engine
  (``_2proc``); ``transfers_per_s`` is the better of the two, ``p99_ms`` its p99.
* hot (PostgreSQL): every client pays the same merchant (``Kind.QRIS`` to one
  ``SystemParty(MERCHANT, ...)``, which the core splits into shard rows) from random
  wallets: ``hot_account_transfers_per_s`` (best of one and two processes).
* ``pgbench -b tpcb-like`` with the same number of clients on the same server (its TPC-B
  transaction is one bank transfer): ``pgbench_tps``.
* ``kaspro ledger check`` on what the run left: ``ledger_clean``.

Targets (from the issue): PostgreSQL >= 50% of pgbench's tps, SQLite >= 3,000 transfers/s,
hot account >= 50% of the spread figure; ``targets`` says which are met.

The benchmark creates and drops its own PostgreSQL databases (``kaspro_bench`` and
``kaspro_pgbench``) and a temporary SQLite file. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import queue
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, text

from storage.db import Database
from storage.migrate import upgrade
from storage.schema import accounts, customers
from wallet.check import check_ledger
from wallet.config import load_settings
from wallet.errors import WalletError
from wallet.ledger import wallet_code
from wallet.model import CustomerParty, Kind, MoveMoney, SystemKind, SystemParty, Tier
from wallet.service import Wallet

log = logging.getLogger("kaspro.bench.ledger")

TOPUP_FLOAT = SystemParty(SystemKind.TOPUP_FLOAT, "va:014")
HOT_MERCHANT = SystemParty(SystemKind.MERCHANT, "ID1020000000001")
FUNDING = 5_000_000  # Rp per wallet
AMOUNT_MIN, AMOUNT_MAX = 1_000, 50_000
WARMUP_MOVES = 2  # untimed moves per client before the clock starts
BENCH_SECURITY = {"pin_hash_memory_kib": 1024, "pin_hash_time_cost": 1}
PG_BENCH_DB = "kaspro_bench"
PG_PGBENCH_DB = "kaspro_pgbench"

TARGET_VS_PGBENCH = 0.5
TARGET_SQLITE_TPS = 3_000
TARGET_HOT_VS_SPREAD = 0.5


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Options:
    seconds: float
    wallets: int
    clients: int
    skip_postgres: bool
    skip_sqlite: bool
    pg_host: str
    pg_port: int
    pg_user: str
    pgbench_scale: int
    pgbench_jobs: int
    move_timeout: float
    seed: int


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, bool]:
    p = argparse.ArgumentParser(description="Ledger throughput through the wallet core.")
    p.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each timed phase")
    p.add_argument("--wallets", type=int, default=10_000, help="Premium wallets to create")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    p.add_argument("--skip-sqlite", action="store_true", help="PostgreSQL only")
    p.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    p.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    p.add_argument(
        "--pgbench-scale",
        type=int,
        default=None,
        help="pgbench -i -s (default: max(16, clients), so branches do not all collide)",
    )
    p.add_argument("--pgbench-jobs", type=int, default=2, help="pgbench -j (threads)")
    p.add_argument("--move-timeout", type=float, default=30.0, help="seconds per transfer")
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args(argv)
    if a.wallets < 2:
        p.error("--wallets must be at least 2")
    if a.clients < 1:
        p.error("--clients must be at least 1")
    if not 0 < a.seconds <= 3600:
        p.error("--seconds must be in (0, 3600]")
    opts = Options(
        seconds=a.seconds,
        wallets=a.wallets,
        clients=a.clients,
        skip_postgres=a.skip_postgres,
        skip_sqlite=a.skip_sqlite,
        pg_host=a.pg_host,
        pg_port=a.pg_port,
        pg_user=a.pg_user,
        pgbench_scale=a.pgbench_scale or max(16, a.clients),
        pgbench_jobs=max(1, min(a.pgbench_jobs, a.clients)),
        move_timeout=a.move_timeout,
        seed=a.seed if a.seed is not None else secrets.randbelow(2**31),
    )
    return opts, a.json


# --------------------------------------------------------------------------- results
@dataclass
class PhaseResult:
    """What a set of clients did in one timed phase (merged across processes)."""

    completed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, completed moves only
    start: float = math.inf  # time.monotonic(): system-wide, comparable across processes
    end: float = -math.inf
    processes: int = 1

    def merge(self, other: PhaseResult) -> None:
        self.completed += other.completed
        self.rejected.update(other.rejected)
        self.errors.update(other.errors)
        self.latencies.extend(other.latencies)
        self.start = min(self.start, other.start)
        self.end = max(self.end, other.end)

    @property
    def wall(self) -> float:
        return max(self.end - self.start, 1e-9)

    @property
    def per_s(self) -> float:
        return self.completed / self.wall if self.completed else 0.0

    def pct_ms(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        rank = max(math.ceil(q * len(ordered)) - 1, 0)
        return ordered[rank] * 1000

    def summary(self) -> dict[str, Any]:
        return {
            "transfers_per_s": round(self.per_s, 1),
            "p50_ms": _r(self.pct_ms(0.50), 2),
            "p99_ms": _r(self.pct_ms(0.99), 2),
            "max_ms": _r(self.pct_ms(1.0), 2),
            "completed": self.completed,
            "rejected": sum(self.rejected.values()),
            "rejected_by_code": dict(self.rejected),
            "errors": sum(self.errors.values()),
            "errors_by_type": dict(self.errors),
            "wall_s": round(self.wall, 3),
            "processes": self.processes,
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "completed": self.completed,
            "rejected": dict(self.rejected),
            "errors": dict(self.errors),
            "latencies": self.latencies,
            "start": self.start,
            "end": self.end,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> PhaseResult:
        return cls(
            completed=data["completed"],
            rejected=Counter(data["rejected"]),
            errors=Counter(data["errors"]),
            latencies=list(data["latencies"]),
            start=data["start"],
            end=data["end"],
        )


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------- commands
class Commands:
    """The money commands of one client: unique keys, random wallets and amounts."""

    def __init__(self, mode: str, ids: Sequence[int], seed: int, tag: str) -> None:
        if mode not in ("spread", "hot"):
            raise ValueError(mode)
        self.mode = mode
        self.ids = ids
        self.rng = random.Random(seed)
        self.tag = tag
        self.n = 0

    def next(self) -> MoveMoney:
        self.n += 1
        rng, ids = self.rng, self.ids
        i = rng.randrange(len(ids))
        amount = rng.randint(AMOUNT_MIN, AMOUNT_MAX)
        key = f"{self.tag}-{self.n}"
        if self.mode == "hot":
            return MoveMoney(
                key=key,
                kind=Kind.QRIS,
                source=CustomerParty(ids[i]),
                destination=HOT_MERCHANT,
                amount=amount,
                actor=f"customer:{ids[i]}",
            )
        j = rng.randrange(len(ids) - 1)
        if j >= i:
            j += 1
        return MoveMoney(
            key=key,
            kind=Kind.TRANSFER,
            source=CustomerParty(ids[i]),
            destination=CustomerParty(ids[j]),
            amount=amount,
            actor=f"customer:{ids[i]}",
        )


# --------------------------------------------------------------------------- wallet side
def make_wallet(url: str, pool_size: int) -> Wallet:
    settings = load_settings(database_url=url, security=BENCH_SECURITY)
    db = Database.from_url(
        url, pool_size=pool_size, busy_timeout_ms=settings.db.sqlite_busy_timeout_ms
    )
    return Wallet(db, settings, secret_key=b"kaspro-bench")


async def create_wallets(db: Database, n: int) -> list[int]:
    """Bulk-insert ``n`` active Premium customers and their wallet accounts (untimed)."""
    ids = await db.write(_insert_wallets, n, f"+62899{secrets.randbelow(10**6):06d}")
    if len(ids) != n:
        raise RuntimeError(f"created {len(ids)} wallets, expected {n}")
    return ids


def _insert_wallets(conn: Connection, n: int, prefix: str) -> list[int]:
    """(In one transaction.) ``prefix`` + 6 digits: 18 of a phone's 20 characters."""
    now = datetime.now(UTC)
    for chunk in _chunks(range(n), 2_000):
        conn.execute(
            customers.insert(),
            [
                {
                    "phone": f"{prefix}{i:06d}",
                    "first_name": "Bench",
                    "last_name": str(i),
                    "language": "id",
                    "tier": Tier.PREMIUM.value,
                    "status": "active",
                    "failed_pin_attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in chunk
            ],
        )
    ids = [
        int(r[0])
        for r in conn.execute(
            select(customers.c.id)
            .where(customers.c.phone.like(f"{prefix}%"))
            .order_by(customers.c.id)
        )
    ]
    for chunk in _chunks(ids, 2_000):
        conn.execute(
            accounts.insert(),
            [
                {
                    "code": wallet_code(cid),
                    "group_code": wallet_code(cid),
                    "kind": "wallet",
                    "customer_id": cid,
                    "created_at": now,
                }
                for cid in chunk
            ],
        )
    return ids


async def fund_wallets(wallet: Wallet, ids: Sequence[int], tasks: int, move_timeout: float) -> None:
    """Top every wallet up through the wallet core (real movements, so the books balance)."""
    todo = iter(ids)
    tag = f"fund-{secrets.token_hex(4)}"
    failures: Counter[str] = Counter()

    async def worker() -> None:
        for cid in todo:
            cmd = MoveMoney(
                key=f"{tag}-{cid}",
                kind=Kind.TOPUP,
                source=TOPUP_FLOAT,
                destination=CustomerParty(cid),
                amount=FUNDING,
                actor="bank:014",
            )
            try:
                async with asyncio.timeout(move_timeout):
                    await wallet.move(cmd)
            except (WalletError, TimeoutError) as exc:
                failures[type(exc).__name__] += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    took = time.monotonic() - started
    log.info("funded %d wallets in %.1fs (%.0f top-ups/s)", len(ids), took, len(ids) / took)
    if failures:
        raise RuntimeError(f"funding failed: {dict(failures)}")


def _ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


async def warm(wallet: Wallet, conns: int) -> None:
    """Open the pool's connections and cache the system accounts' shard ids."""
    await asyncio.gather(*(wallet.db.read(_ping) for _ in range(conns)))
    await wallet.ensure_system_accounts(HOT_MERCHANT, TOPUP_FLOAT)


async def run_clients(
    wallet: Wallet,
    *,
    mode: str,
    ids: Sequence[int],
    clients: int,
    seconds: float,
    seed: int,
    tag: str,
    move_timeout: float,
    before_start: Callable[[], Awaitable[None]] | None = None,
) -> PhaseResult:
    """``clients`` asyncio tasks moving money back to back for ``seconds``.

    Each client first does a few untimed moves; the clock starts when all are ready and
    ``before_start`` (the cross-process start signal) has returned."""
    result = PhaseResult()
    ready = 0
    all_ready = asyncio.Event()
    go = asyncio.Event()
    deadline = math.inf
    error_samples: list[str] = []

    async def one(cmd: MoveMoney, timed: bool) -> None:
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(move_timeout):
                await wallet.move(cmd)
        except WalletError as exc:
            if timed:
                result.rejected[exc.code] += 1
        except Exception as exc:  # a benchmark counts failures instead of stopping
            if timed:
                result.errors[type(exc).__name__] += 1
            if len(error_samples) < 5:
                error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
        else:
            if timed:
                result.completed += 1
                result.latencies.append(time.perf_counter() - t0)

    async def client(index: int) -> None:
        nonlocal ready
        cmds = Commands(mode, ids, seed * 1000 + index, f"{tag}-c{index}")
        for _ in range(WARMUP_MOVES):
            await one(cmds.next(), timed=False)
        ready += 1
        if ready == clients:
            all_ready.set()
        await go.wait()
        while time.monotonic() < deadline:
            await one(cmds.next(), timed=True)
        result.end = max(result.end, time.monotonic())

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    try:
        async with asyncio.timeout(max(60.0, move_timeout * (WARMUP_MOVES + 1))):
            await all_ready.wait()
        if before_start is not None:
            await before_start()
        result.start = time.monotonic()
        deadline = result.start + seconds
        go.set()
        async with asyncio.timeout(seconds + move_timeout + 60):
            await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for sample in error_samples:
        log.warning("%s: %s", tag, sample)
    return result


def _seed(opts: Options, tag: str) -> int:
    return opts.seed ^ zlib.crc32(tag.encode())


async def phase_in_process(
    url: str, opts: Options, *, mode: str, ids: Sequence[int], tag: str
) -> PhaseResult:
    wallet = make_wallet(url, pool_size=opts.clients + 4)
    try:
        await warm(wallet, opts.clients)
        return await run_clients(
            wallet,
            mode=mode,
            ids=ids,
            clients=opts.clients,
            seconds=opts.seconds,
            seed=_seed(opts, tag),
            tag=tag,
            move_timeout=opts.move_timeout,
        )
    finally:
        await wallet.db.dispose()


def _worker_main(
    index: int,
    url: str,
    opts: Options,
    mode: str,
    ids: list[int],
    clients: int,
    tag: str,
    ready_q: Any,
    go: Any,
    result_q: Any,
) -> None:
    """A worker process (spawned, not forked): its own engine and ``clients`` tasks."""
    _setup_logging()

    async def main() -> PhaseResult:
        wallet = make_wallet(url, pool_size=clients + 2)
        try:
            await warm(wallet, clients)

            async def wait_for_go() -> None:
                ready_q.put(index)
                if not await asyncio.to_thread(go.wait, 180.0):
                    raise TimeoutError("no start signal from the parent")

            return await run_clients(
                wallet,
                mode=mode,
                ids=ids,
                clients=clients,
                seconds=opts.seconds,
                seed=_seed(opts, tag) + index * 7919,
                tag=f"{tag}-p{index}",
                move_timeout=opts.move_timeout,
                before_start=wait_for_go,
            )
        finally:
            await wallet.db.dispose()

    try:
        result_q.put(("ok", index, asyncio.run(main()).to_wire()))
    except BaseException as exc:
        result_q.put(("error", index, f"{type(exc).__name__}: {exc}"))
        raise


def phase_processes(
    url: str, opts: Options, *, mode: str, ids: Sequence[int], tag: str, processes: int = 2
) -> PhaseResult:
    """The same clients split across ``processes`` worker processes, started together."""
    ctx = mp.get_context("spawn")
    ready_q = ctx.Queue()
    result_q = ctx.Queue()
    go = ctx.Event()
    per = [opts.clients // processes + (i < opts.clients % processes) for i in range(processes)]
    per = [n for n in per if n > 0]
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(i, url, opts, mode, list(ids), n, tag, ready_q, go, result_q),
            name=f"bench-{tag}-{i}",
            daemon=True,
        )
        for i, n in enumerate(per)
    ]
    merged = PhaseResult(processes=len(procs))
    try:
        for proc in procs:
            proc.start()
        waiting = set(range(len(procs)))
        limit = time.monotonic() + 180
        while waiting:
            with contextlib.suppress(queue.Empty):
                waiting.discard(ready_q.get(timeout=0.5))
            with contextlib.suppress(queue.Empty):
                _status, index, payload = result_q.get_nowait()
                raise RuntimeError(f"worker {index} failed before the start: {payload}")
            dead = [proc.name for proc in procs if not proc.is_alive()]
            if dead:
                raise RuntimeError(f"workers exited before the start: {dead}")
            if time.monotonic() > limit:
                raise TimeoutError(f"workers not ready: {sorted(waiting)}")
        go.set()
        limit = time.monotonic() + opts.seconds + opts.move_timeout + 120
        for _ in procs:
            try:
                status, index, payload = result_q.get(timeout=max(limit - time.monotonic(), 0.1))
            except queue.Empty:
                raise TimeoutError("workers did not report in time") from None
            if status != "ok":
                raise RuntimeError(f"worker {index} failed: {payload}")
            merged.merge(PhaseResult.from_wire(payload))
    finally:
        go.set()  # never leave a worker waiting for a start that will not come
        for proc in procs:
            proc.join(timeout=15)
            if proc.is_alive():
                log.warning("terminating worker %s", proc.name)
                proc.terminate()
                proc.join(timeout=5)
    return merged


async def ledger_report(url: str) -> dict[str, Any]:
    wallet = make_wallet(url, pool_size=2)
    try:
        report = await wallet.db.read(check_ledger, wallet.ledger.limits, wallet.clock)
        return {
            "ledger_clean": report.ok,
            "ledger_movements": report.movements,
            "ledger_accounts": report.accounts,
            "ledger_problems": report.problems[:10],
        }
    finally:
        await wallet.db.dispose()


async def setup_wallets(url: str, opts: Options) -> list[int]:
    await upgrade(url)
    wallet = make_wallet(url, pool_size=opts.clients + 4)
    try:
        started = time.monotonic()
        ids = await create_wallets(wallet.db, opts.wallets)
        log.info("created %d Premium wallets in %.1fs", len(ids), time.monotonic() - started)
        await fund_wallets(wallet, ids, opts.clients, opts.move_timeout)
        return ids
    finally:
        await wallet.db.dispose()


def measure(
    url: str, opts: Options, *, mode: str, ids: Sequence[int], label: str, pg: PgAdmin | None
) -> dict[str, Any]:
    """One mode, in one process and then in two; the better one is the figure."""
    runs: dict[str, PhaseResult] = {}
    for procs in (1, 2):
        if pg is not None:
            pg.checkpoint()
        tag = f"{label}-{mode}-{procs}p-{secrets.token_hex(3)}"
        log.info(
            "%s %s: %d clients in %d process(es) for %gs",
            label, mode, opts.clients, procs, opts.seconds,
        )  # fmt: skip
        if procs == 1:
            res = asyncio.run(phase_in_process(url, opts, mode=mode, ids=ids, tag=tag))
        else:
            res = phase_processes(url, opts, mode=mode, ids=ids, tag=tag, processes=procs)
        log.info(
            "%s %s %dp: %.0f/s p50 %s ms p99 %s ms, %d rejected, %d errors",
            label, mode, procs, res.per_s, _r(res.pct_ms(0.5), 2), _r(res.pct_ms(0.99), 2),
            sum(res.rejected.values()), sum(res.errors.values()),
        )  # fmt: skip
        runs[f"{procs}proc"] = res
    best_key = max(runs, key=lambda k: runs[k].per_s)
    best = runs[best_key]
    out: dict[str, Any] = {
        "transfers_per_s": round(best.per_s, 1),
        "p99_ms": _r(best.pct_ms(0.99), 2),
        "p50_ms": _r(best.pct_ms(0.50), 2),
        "best": best_key,
    }
    for key, res in runs.items():
        out[f"transfers_per_s_{key}"] = round(res.per_s, 1)
        out[f"p99_ms_{key}"] = _r(res.pct_ms(0.99), 2)
    out["rejected"] = sum(sum(r.rejected.values()) for r in runs.values())
    out["errors"] = sum(sum(r.errors.values()) for r in runs.values())
    out["runs"] = {key: res.summary() for key, res in runs.items()}
    return out


# --------------------------------------------------------------------------- PostgreSQL
class PgAdmin:
    """The throwaway databases and pgbench, through the PostgreSQL client programs."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.env = {
            **os.environ,
            "PGHOST": opts.pg_host,
            "PGPORT": str(opts.pg_port),
            "PGUSER": opts.pg_user,
            "PGCONNECT_TIMEOUT": "10",
        }
        self.created: list[str] = []

    def url(self, dbname: str) -> str:
        o = self.opts
        return f"postgresql+asyncpg://{o.pg_user}@{o.pg_host}:{o.pg_port}/{dbname}"

    def _run(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        exe = shutil.which(cmd[0])
        if exe is None:
            raise RuntimeError(f"{cmd[0]} is not installed")
        proc = subprocess.run(
            [exe, *cmd[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
            )
        return proc

    def psql(self, sql: str, dbname: str = "postgres", timeout: float = 120) -> str:
        return self._run(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-c", sql], timeout
        ).stdout

    def server_version(self) -> str:
        return self.psql("SHOW server_version").strip()

    def recreate(self, dbname: str) -> None:
        self.created.append(dbname)
        self.drop(dbname)
        self.psql(f'CREATE DATABASE "{dbname}"')

    def drop(self, dbname: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    def drop_all(self) -> None:
        for name in reversed(self.created):
            try:
                self.drop(name)
            except Exception as exc:
                log.warning("could not drop database %s: %s", name, exc)
        self.created.clear()

    def checkpoint(self) -> None:
        """Start each timed phase without the previous one's dirty buffers."""
        try:
            self.psql("CHECKPOINT")
        except Exception as exc:
            log.warning("CHECKPOINT failed: %s", exc)

    def vacuum_analyze(self, dbname: str) -> None:
        self.psql("VACUUM ANALYZE", dbname=dbname, timeout=300)

    def pgbench(self, dbname: str) -> dict[str, Any]:
        o = self.opts
        started = time.monotonic()
        self._run(["pgbench", "-i", "-q", "-s", str(o.pgbench_scale), dbname], timeout=900)
        log.info("pgbench -i -s %d took %.1fs", o.pgbench_scale, time.monotonic() - started)
        self.checkpoint()
        seconds = max(1, round(o.seconds))
        cmd = [
            "pgbench", "-b", "tpcb-like", "-c", str(o.clients), "-j", str(o.pgbench_jobs),
            "-T", str(seconds), dbname,
        ]  # fmt: skip
        log.info("running %s", " ".join(cmd))
        out = self._run(cmd, timeout=seconds + 300).stdout
        tps = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", out, re.M)
        tps = tps or re.search(r"^tps = ([0-9.]+)", out, re.M)
        if tps is None:
            raise RuntimeError(f"no tps line in pgbench output:\n{out}")
        lat = re.search(r"^latency average = ([0-9.]+) ms", out, re.M)
        done = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
        failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
        log.info("pgbench: %s tps", tps.group(1))
        return {
            "pgbench_tps": round(float(tps.group(1)), 1),
            "pgbench_latency_avg_ms": float(lat.group(1)) if lat else None,
            "pgbench_transactions": int(done.group(1)) if done else None,
            "pgbench_failed": int(failed.group(1)) if failed else None,
            "pgbench_scale": o.pgbench_scale,
            "pgbench_clients": o.clients,
            "pgbench_jobs": o.pgbench_jobs,
            "pgbench_seconds": seconds,
            "pgbench_command": " ".join(cmd),
        }


def bench_postgres(opts: Options) -> dict[str, Any]:
    pg = PgAdmin(opts)
    try:
        version = pg.server_version()
    except Exception as exc:
        raise RuntimeError(
            f"PostgreSQL at {opts.pg_host}:{opts.pg_port} is not reachable "
            f"(use --skip-postgres): {exc}"
        ) from exc
    try:
        pg.recreate(PG_BENCH_DB)
        pg.recreate(PG_PGBENCH_DB)
        url = pg.url(PG_BENCH_DB)
        ids = asyncio.run(setup_wallets(url, opts))
        pg.vacuum_analyze(PG_BENCH_DB)

        spread = measure(url, opts, mode="spread", ids=ids, label="postgres", pg=pg)
        hot = measure(url, opts, mode="hot", ids=ids, label="postgres", pg=pg)
        bench = pg.pgbench(PG_PGBENCH_DB)
        check = asyncio.run(ledger_report(url))
    finally:
        pg.drop_all()

    out: dict[str, Any] = {
        "transfers_per_s": spread["transfers_per_s"],
        "p99_ms": spread["p99_ms"],
        "pgbench_tps": bench["pgbench_tps"],
        "hot_account_transfers_per_s": hot["transfers_per_s"],
        "ratio_vs_pgbench": _ratio(spread["transfers_per_s"], bench["pgbench_tps"]),
        "hot_vs_spread": _ratio(hot["transfers_per_s"], spread["transfers_per_s"]),
        "ledger_clean": check["ledger_clean"],
    }
    out["targets"] = {
        "vs_pgbench_ge_0.5": (out["ratio_vs_pgbench"] or 0) >= TARGET_VS_PGBENCH,
        "hot_vs_spread_ge_0.5": (out["hot_vs_spread"] or 0) >= TARGET_HOT_VS_SPREAD,
    }
    out.update({k: v for k, v in spread.items() if k not in out})
    out["hot"] = hot
    out.update(bench)
    out.update(check)
    out["server_version"] = version
    return out


def bench_sqlite(opts: Options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kaspro-bench-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        ids = asyncio.run(setup_wallets(url, opts))
        spread = measure(url, opts, mode="spread", ids=ids, label="sqlite", pg=None)
        check = asyncio.run(ledger_report(url))
    out: dict[str, Any] = {
        "transfers_per_s": spread["transfers_per_s"],
        "p99_ms": spread["p99_ms"],
        "ledger_clean": check["ledger_clean"],
        "targets": {"ge_3000_per_s": spread["transfers_per_s"] >= TARGET_SQLITE_TPS},
    }
    out.update({k: v for k, v in spread.items() if k not in out})
    out.update(check)
    return out


# --------------------------------------------------------------------------- output
def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 3)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def human(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"ledger benchmark: {cfg['wallets']} Premium wallets, {cfg['clients']} clients, "
        f"{cfg['seconds']}s per phase ({result['elapsed_s']}s in all; load average "
        f"{cfg['loadavg_1m_before']} before, {cfg['loadavg_1m_after']} after, "
        f"{cfg['cpus']} CPUs)",
    ]
    pg = result.get("postgres") or {}
    if pg.get("skipped"):
        lines.append("PostgreSQL: skipped")
    elif "error" in pg:
        lines.append(f"PostgreSQL: ERROR {pg['error']}")
    elif pg:
        hot = pg["hot"]
        lines += [
            f"PostgreSQL {pg['server_version']}",
            f"  transfers/s      {pg['transfers_per_s']:>9}  (1 process "
            f"{pg['transfers_per_s_1proc']}, 2 processes {pg['transfers_per_s_2proc']})",
            f"  p50 / p99 ms     {pg['p50_ms']} / {pg['p99_ms']}",
            f"  pgbench tps      {pg['pgbench_tps']:>9}  (tpcb-like -s {pg['pgbench_scale']}"
            f" -c {pg['pgbench_clients']} -j {pg['pgbench_jobs']})",
            f"  vs pgbench       {pg['ratio_vs_pgbench']!s:>9}  (target >= {TARGET_VS_PGBENCH})",
            f"  hot merchant/s   {pg['hot_account_transfers_per_s']:>9}  (1 process "
            f"{hot['transfers_per_s_1proc']}, 2 processes {hot['transfers_per_s_2proc']}; "
            f"p99 {hot['p99_ms']} ms)",
            f"  hot vs spread    {pg['hot_vs_spread']!s:>9}  (target >= {TARGET_HOT_VS_SPREAD})",
            f"  ledger clean     {pg['ledger_clean']!s:>9}  ({pg['ledger_movements']} movements)",
        ]
        lines += _rejections("spread", pg["runs"]) + _rejections("hot", hot["runs"])
    sq = result.get("sqlite") or {}
    if sq.get("skipped"):
        lines.append("SQLite: skipped")
    elif "error" in sq:
        lines.append(f"SQLite: ERROR {sq['error']}")
    elif sq:
        lines += [
            "SQLite",
            f"  transfers/s      {sq['transfers_per_s']:>9}  (1 process "
            f"{sq['transfers_per_s_1proc']}, 2 processes {sq['transfers_per_s_2proc']}; "
            f"target >= {TARGET_SQLITE_TPS})",
            f"  p50 / p99 ms     {sq['p50_ms']} / {sq['p99_ms']}",
            f"  ledger clean     {sq['ledger_clean']!s:>9}  ({sq['ledger_movements']} movements)",
        ]
        lines += _rejections("spread", sq["runs"])
    return "\n".join(lines)


def _rejections(label: str, runs: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"  {label} {key}: rejected {run['rejected_by_code']}, errors {run['errors_by_type']}"
        for key, run in runs.items()
        if run["rejected"] or run["errors"]
    ]


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(processName)s %(name)s %(levelname)s %(message)s",
        force=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts, as_json = parse_args(argv)
    _setup_logging()
    started = time.monotonic()
    load_before = _loadavg()
    result: dict[str, Any] = {}
    failed = False
    runners: tuple[tuple[str, bool, Callable[[Options], dict[str, Any]]], ...] = (
        ("postgres", opts.skip_postgres, bench_postgres),
        ("sqlite", opts.skip_sqlite, bench_sqlite),
    )
    for name, skip, run in runners:
        if skip:
            result[name] = {"skipped": True}
            continue
        try:
            result[name] = run(opts)
        except Exception as exc:
            log.exception("%s benchmark failed", name)
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed = True
        else:
            failed = failed or not result[name]["ledger_clean"]
    result["config"] = {
        "wallets": opts.wallets,
        "clients": opts.clients,
        "seconds": opts.seconds,
        "seed": opts.seed,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        # Other work on the machine skews every figure: 1-minute load before and after.
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": _loadavg(),
    }
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    if as_json:
        print(json.dumps(result, separators=(",", ":")), flush=True)
    else:
        print(human(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
