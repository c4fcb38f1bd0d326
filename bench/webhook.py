"""Telegram webhook throughput, end to end: HTTP in → engine → outbox → Bot API out.

``python bench/webhook.py --json`` prints one JSON line::

    {"sqlite": {"updates_per_s", "p50_ms", "p99_ms", "p99_ms_at_half_rate",
                "rss_mb_10k_chats", ...},
     "postgres": {...the same...},
     "bare_aiohttp": {"requests_per_s", ...}, "targets": {...}, "config": {...}}

Processes (all on loopback; the machine this was written for has 2 cores):

* the server: the real ``kaspro serve`` (``python -m bot.cli serve``, i.e.
  ``bot.server.serve``: migrations, ``Service``, ``make_app``, an ``AppRunner`` without
  access log, the production logging set-up) configured through ``KASPRO_*`` variables:
  the database, the bot token, the webhook secret, the Bot API URL of the stand-in and a
  Telegram rate limiter opened wide (``messages_per_second`` and ``per_chat_per_second``
  100,000, ``per_chat_burst`` 1,000: the stand-in has no limits and we measure our own
  overhead, not Telegram's 30 messages/s);
* the stand-in Bot API: ``tests.standins.telegram.FakeTelegram`` in a process of its own
  (``--role standin``), which also notes the ``time.monotonic()`` at which each
  ``sendMessage`` arrived, per chat, and answers ``/bench/stats``, ``/bench/dump`` and
  ``/bench/wait`` (CLOCK_MONOTONIC is system-wide, so its clock and the load generator's
  agree);
* the bare handler (``--role bare``): an aiohttp app answering ``200 ok`` to
  ``POST /webhooks/telegram`` after reading the body, nothing else: the ceiling;
* this process: the orchestrator and the load generator (one aiohttp ``ClientSession``,
  keep-alive, ``--concurrency`` connections).

Every update is ``tests.standins.telegram.text_update(chat, --text)`` (default ``halo``,
one reply; ``bantuan`` gives two) with a unique ``update_id``, posted with the right
``X-Telegram-Bot-Api-Secret-Token``. The updates of one chat are posted one after the
other (a chat's next update starts when the previous one was answered 200), so the
server's per-chat order equals the sending order and the k-th reply group of a chat
belongs to its k-th update. Per database, on a fresh database (a temporary SQLite file;
PostgreSQL ``kaspro_bench_webhook`` at ``--pg-host``, recreated, migrated with
``storage.migrate.upgrade``, dropped at the end):

1. warm-up: ``--warmup`` updates over their own chats; also gives replies per update;
2. maximum rate, closed loop: ``--updates`` updates over ``--chats`` new chats (update
   ``i`` goes to chat ``i % chats``), ``--concurrency`` senders, each posting the next
   update as soon as its previous one was answered. ``webhook_accept_per_s``: updates
   answered 200 per second; ``updates_per_s``: updates whose replies all reached the
   stand-in, per second from the first POST to the last reply (the end-to-end rate).
   ``p50_ms``/``p99_ms``: from POST start to the arrival of the update's last reply at
   the stand-in (the backlog the webhook accepted faster than the engine applied is part
   of it); ``http_p50_ms``/``http_p99_ms``: the webhook's own answer;
3. saturated without a backlog (``bounded``, extra): ``--bounded-updates`` updates, each
   sender waiting until the stand-in has its update's replies (``/bench/wait``) before
   posting the next, so at most ``--concurrency`` updates are in flight end to end:
   ``updates_per_s_bounded``;
4. half rate, open loop: half the larger of the two end-to-end rates above, on a fixed
   arrival schedule for ``--half-rate-seconds`` over the same chats; latency counted from
   each update's scheduled time (late starts of the generator included):
   ``p99_ms_at_half_rate``;
5. memory: one update for each new chat until ``--rss-chats`` distinct chats (warm-up,
   maximum-rate and these) have been handled, at most ``--concurrency`` in flight end to
   end (so it is memory per chat, not per queued update); then ``VmRSS`` of the server
   process: ``rss_mb_10k_chats`` (``rss_hwm_mb``: its peak, ``VmHWM``;
   ``rss_mb_after_max``: after the maximum-rate backlog; ``rss_phase.kb_per_new_chat``).

Each phase also reports ``extra_replies`` (a reply delivered twice: more than ``k``
replies for an update) and stops sending after 20 failed POSTs (``aborted``: a server
that fails every request would otherwise hold the run for ``--phase-timeout``); the
server's log is summarised in ``server_log`` (lines by logger, warnings and errors by
message; ``--logs-dir`` keeps it) and its Prometheus counters in ``server_metrics``.

``postgres_few_chats`` (extra; ``--pg-few-chats``, default 16, 0 skips): PostgreSQL again
with that many chats and senders (at most 5,000 updates, 2,000 bounded, no memory
phase): fewer chats draining at once than the connection pool holds, since more of them
than that exhaust the pool (each drain keeps a pooled connection for its chat's advisory
lock while its work needs another).

``bare_aiohttp``: the same generator, concurrency and request bodies against the bare
handler: ``requests_per_s``. CPU use of every process over each phase is in ``cpu``
(``server_ms_per_update`` is the server's CPU per update, whatever the machine's load;
``postgres_util`` sums every ``postgres`` process on the machine). ``--py-spy PATH``
records the server during the maximum-rate phase (``--profile-dir``; raw collapsed
stacks, ``py-spy record --format raw``), which slows it a little.

Targets (from the issue): ``updates_per_s`` >= 30% of the bare handler's rate;
``p99_ms_at_half_rate`` <= 50 ms; ``rss_mb_10k_chats`` <= 250 MB. ``targets`` says which
are met. Child processes are stopped and the database dropped whatever happens. Logs go
to stderr. Exit status 1 when a backend errored or updates went unanswered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger("kaspro.bench.webhook")

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
TOKEN = "123456:BENCH-WEBHOOK-TOKEN"
SECRET = "bench-webhook-secret-0123"
PG_DB = "kaspro_bench_webhook"
TEXTS = ("halo", "saldo", "bantuan")
WEBHOOK = "/webhooks/telegram"
# Chat id ranges of the phases (distinct, so every phase's chats are new to the server).
WARMUP_CHATS_FROM = 10_000_000
MAIN_CHATS_FROM = 20_000_000
RSS_CHATS_FROM = 30_000_000
RATE_LIMITS = {
    "messages_per_second": 100_000.0,
    "per_chat_per_second": 100_000.0,
    "per_chat_burst": 1_000,
}
TARGET_VS_BARE = 0.30
TARGET_P99_HALF_RATE_MS = 50.0
TARGET_RSS_MB = 250.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Options:
    updates: int
    chats: int
    concurrency: int
    warmup: int
    warmup_chats: int
    half_rate_seconds: float
    bounded_updates: int
    rss_chats: int
    text: str
    skip_sqlite: bool
    skip_postgres: bool
    skip_bare: bool
    pg_host: str
    pg_port: int
    pg_user: str
    pg_few_chats: int
    server_log_level: str
    py_spy: str | None
    profile_dir: str | None
    logs_dir: str | None
    phase_timeout: float
    stall_timeout: float


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, bool, argparse.Namespace]:
    p = argparse.ArgumentParser(description="Telegram webhook throughput, end to end.")
    p.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    p.add_argument("--updates", type=int, default=20_000, help="updates in the max-rate run")
    p.add_argument("--chats", type=int, default=2_000, help="distinct chats in the max-rate run")
    p.add_argument("--concurrency", type=int, default=64, help="concurrent senders")
    p.add_argument("--warmup", type=int, default=1_000, help="untimed updates first")
    p.add_argument("--warmup-chats", type=int, default=200, help="chats of the warm-up")
    p.add_argument(
        "--half-rate-seconds", type=float, default=20.0, help="length of the half-rate run"
    )
    p.add_argument(
        "--rss-chats", type=int, default=10_000, help="distinct chats before reading RSS"
    )
    p.add_argument(
        "--bounded-updates",
        type=int,
        default=5_000,
        help="updates of the run with at most --concurrency updates in flight end to end (0: not)",
    )
    p.add_argument("--text", choices=TEXTS, default="halo", help="what every update says")
    p.add_argument("--skip-sqlite", action="store_true")
    p.add_argument("--skip-postgres", action="store_true")
    p.add_argument("--skip-bare", action="store_true", help="no bare aiohttp ceiling")
    p.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    p.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    p.add_argument(
        "--pg-few-chats",
        type=int,
        default=16,
        help="also run PostgreSQL with this many chats and senders (0: not)",
    )
    p.add_argument(
        "--server-log-level",
        default="INFO",
        help="KASPRO_LOG_LEVEL of the server (production default INFO)",
    )
    p.add_argument("--py-spy", help="path of a py-spy binary: profile the max-rate phase")
    p.add_argument("--profile-dir", help="where py-spy writes (default: a temporary dir)")
    p.add_argument("--logs-dir", help="keep the server logs (its stderr) in this directory")
    p.add_argument("--phase-timeout", type=float, default=900.0, help="seconds per phase")
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=60.0,
        help="give up waiting for replies after this long without progress",
    )
    # internal: the child processes
    p.add_argument("--role", choices=("standin", "bare"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.role is None:
        if min(a.updates, a.chats, a.concurrency, a.warmup, a.warmup_chats) < 1:
            p.error("--updates, --chats, --concurrency, --warmup and --warmup-chats must be >= 1")
        if a.half_rate_seconds <= 0 or a.rss_chats < 0:
            p.error("--half-rate-seconds must be > 0 and --rss-chats >= 0")
    opts = Options(
        updates=a.updates,
        chats=a.chats,
        concurrency=a.concurrency,
        warmup=a.warmup,
        warmup_chats=a.warmup_chats,
        half_rate_seconds=a.half_rate_seconds,
        bounded_updates=a.bounded_updates,
        rss_chats=a.rss_chats,
        text=a.text,
        skip_sqlite=a.skip_sqlite,
        skip_postgres=a.skip_postgres,
        skip_bare=a.skip_bare,
        pg_host=a.pg_host,
        pg_port=a.pg_port,
        pg_user=a.pg_user,
        pg_few_chats=a.pg_few_chats,
        server_log_level=a.server_log_level,
        py_spy=a.py_spy,
        profile_dir=a.profile_dir,
        logs_dir=a.logs_dir,
        phase_timeout=a.phase_timeout,
        stall_timeout=a.stall_timeout,
    )
    return opts, a.json, a


# --------------------------------------------------------------------------- child roles
def _standins() -> Any:
    """``tests.standins.telegram`` (the repository root is not on the script's path)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.standins import telegram as standin

    return standin


def serve_standin(port: int) -> None:
    """The stand-in Bot API, counting calls and timing each ``sendMessage`` per chat."""
    standin = _standins()

    class BenchTelegram(standin.FakeTelegram):  # type: ignore[misc,name-defined]
        def __init__(self, token: str) -> None:
            super().__init__(token)
            self.counts: Counter[str] = Counter()
            self.sent_at: dict[int, list[float]] = {}
            # chat -> [(replies awaited, future)], for /bench/wait
            self.waiters: dict[int, list[tuple[int, asyncio.Future[float]]]] = {}

        async def method(self, request: web.Request) -> web.Response:
            arrived = time.monotonic()
            resp: web.Response = await super().method(request)
            # no await since FakeTelegram appended this call: the last one is ours
            if self.calls:
                name, params = self.calls.pop()  # keep only what the benchmark needs
                self.counts[name] += 1
                if name == "sendMessage":
                    chat = int(params["chat_id"])
                    times = self.sent_at.setdefault(chat, [])
                    times.append(arrived)
                    self._wake(chat, len(times), arrived)
            return resp

        def _wake(self, chat: int, count: int, at: float) -> None:
            waiting = self.waiters.get(chat)
            if not waiting:
                return
            keep = []
            for want, fut in waiting:
                if count >= want:
                    if not fut.done():
                        fut.set_result(at)
                else:
                    keep.append((want, fut))
            if keep:
                self.waiters[chat] = keep
            else:
                del self.waiters[chat]

    tg = BenchTelegram(TOKEN)

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response({"counts": tg.counts, "now": time.monotonic()})

    async def dump(_request: web.Request) -> web.Response:
        return web.json_response({"sent_at": {str(k): v for k, v in tg.sent_at.items()}})

    async def wait(request: web.Request) -> web.Response:
        """Answer when ``chat`` has had ``count`` sendMessage calls: the arrival time."""
        chat, count = int(request.query["chat"]), int(request.query["count"])
        times = tg.sent_at.get(chat, [])
        if len(times) >= count:
            return web.json_response({"at": times[count - 1]})
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        tg.waiters.setdefault(chat, []).append((count, fut))
        try:
            async with asyncio.timeout(float(request.query.get("within", "60"))):
                return web.json_response({"at": await fut})
        except TimeoutError:
            return web.json_response({"at": None})

    async def reset(_request: web.Request) -> web.Response:
        tg.counts.clear()
        tg.sent_at.clear()
        return web.json_response({"ok": True})

    app = tg.app()
    app.router.add_get("/bench/stats", stats)
    app.router.add_get("/bench/dump", dump)
    app.router.add_get("/bench/wait", wait)
    app.router.add_post("/bench/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_bare(port: int) -> None:
    """The ceiling: aiohttp answering 200 to the webhook's POSTs, nothing else."""

    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post(WEBHOOK, webhook)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem_mb(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def postgres_cpu() -> float:
    """CPU seconds of PostgreSQL on this machine: every live ``postgres`` process, plus
    what the postmaster collected from its exited children (closed connections)."""
    procs: dict[int, tuple[int, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")] == "postgres":
            fields = stat[stat.rindex(")") + 2 :].split()
            procs[int(entry.name)] = (int(fields[1]), fields)
    ticks = 0
    for ppid, fields in procs.values():
        ticks += int(fields[11]) + int(fields[12])
        if ppid not in procs:  # the postmaster: its reaped children's time
            ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


class Child:
    """A child process with its output in files; stopped by its own pid only."""

    def __init__(self, name: str, argv: list[str], tmp: Path, env: dict[str, str]) -> None:
        self.name = name
        self.out_path = tmp / f"{name}.out"
        self.err_path = tmp / f"{name}.err"
        self._out = self.out_path.open("wb")
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            text = self.err_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> None:
        if self.alive():
            for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        self._err.close()


def start_py_spy(py_spy: str, pid: int, output: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` into ``output`` (raw collapsed stacks) until SIGINT."""
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [py_spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
    return subprocess.Popen(
        [*argv, "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASPRO_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


async def wait_healthy(child: Child, url: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited:\n{child.stderr_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} not ready after {within}s")
            await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- statistics
def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of seconds, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(max(int(q * len(ordered) + 0.999999) - 1, 0), len(ordered) - 1)
    return round(ordered[rank] * 1000, 2)


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


# --------------------------------------------------------------------------- CPU meter
@dataclass
class CpuMeter:
    """CPU seconds of the processes involved, over one phase."""

    pids: dict[str, int]
    with_postgres: bool = False
    start: dict[str, float] = field(default_factory=dict)
    t0: float = 0.0

    def _sample(self) -> dict[str, float]:
        out = {name: proc_cpu(pid) for name, pid in self.pids.items()}
        out["loadgen"] = time.process_time()
        if self.with_postgres:
            out["postgres"] = postgres_cpu()
        return out

    def begin(self) -> None:
        self.start, self.t0 = self._sample(), time.monotonic()

    def end(self, updates: int) -> dict[str, float | None]:
        wall = time.monotonic() - self.t0
        now = self._sample()
        out: dict[str, float | None] = {}
        for name, value in now.items():
            used = value - self.start.get(name, 0.0)
            out[f"{name}_util"] = round(used / wall, 2) if wall > 0 else None
            out[f"{name}_ms_per_update"] = round(used / updates * 1000, 3) if updates else None
        return out


# --------------------------------------------------------------------------- load generator
@dataclass
class Sent:
    due: float  # scheduled start (open loop) or actual start (closed loop)
    started: float
    answered: float
    status: int


class LoadGen:
    """Posts Telegram updates to a webhook and reads the stand-in's bookkeeping."""

    def __init__(self, base: str, standin: str, concurrency: int, text: str) -> None:
        self.url = base.rstrip("/") + WEBHOOK
        self.standin = standin.rstrip("/")
        self.concurrency = concurrency
        self.text = text
        self.headers = {
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": SECRET,
        }
        self._update_id = 1
        # a phase stops sending after this many failed POSTs (a server that fails every
        # request would otherwise hold the run for ``--phase-timeout``)
        self.max_failures = 20
        self.failures = 0
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(concurrency, 256), keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        self.control = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        await self.http.close()
        await self.control.close()

    def plan(self, chats: Sequence[int], n: int) -> list[tuple[int, bytes]]:
        """``n`` updates round-robin over ``chats``, serialised ahead of time."""
        text_update = _standins().text_update
        out = []
        for i in range(n):
            chat = chats[i % len(chats)]
            body = text_update(chat, self.text, update_id=self._update_id)
            self._update_id += 1
            out.append((chat, json.dumps(body, separators=(",", ":")).encode()))
        return out

    async def _post(self, body: bytes) -> tuple[float, float, int]:
        started = time.monotonic()
        try:
            async with self.http.post(self.url, data=body, headers=self.headers) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("POST failed: %s", exc)
            status = -1
        if status != 200:
            self.failures += 1
        return started, time.monotonic(), status

    @property
    def aborted(self) -> bool:
        return self.failures >= self.max_failures

    async def closed_loop(self, plan: list[tuple[int, bytes]], within: float) -> list[Sent | None]:
        """``concurrency`` senders, each posting as soon as its last POST was answered."""
        results: list[Sent | None] = [None] * len(plan)
        locks = {chat: asyncio.Lock() for chat, _ in plan}
        todo = iter(range(len(plan)))
        self.failures = 0

        async def sender() -> None:
            for i in todo:
                if self.aborted:
                    return
                chat, body = plan[i]
                async with locks[chat]:  # a chat's updates one after the other, in order
                    started, answered, status = await self._post(body)
                results[i] = Sent(started, started, answered, status)

        tasks = [asyncio.create_task(sender()) for _ in range(min(self.concurrency, len(plan)))]
        try:
            async with asyncio.timeout(within):
                await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return results

    async def e2e_closed_loop(
        self, plan: list[tuple[int, bytes]], k: int, within: float
    ) -> tuple[list[Sent | None], list[float | None]]:
        """``concurrency`` senders, each waiting for its update's replies to reach the
        stand-in before posting the next: at most ``concurrency`` updates in flight end to
        end (the server saturated without an ever-growing backlog)."""
        results: list[Sent | None] = [None] * len(plan)
        done: list[float | None] = [None] * len(plan)
        locks = {chat: asyncio.Lock() for chat, _ in plan}
        posted: Counter[int] = Counter()
        todo = iter(range(len(plan)))
        self.failures = 0

        async def sender() -> None:
            for i in todo:
                if self.aborted:
                    return
                chat, body = plan[i]
                async with locks[chat]:
                    posted[chat] += 1
                    started, answered, status = await self._post(body)
                    results[i] = Sent(started, started, answered, status)
                    if status != 200:
                        continue
                    query = {"chat": str(chat), "count": str(posted[chat] * k), "within": "25"}
                    try:
                        async with self.control.get(
                            self.standin + "/bench/wait", params=query
                        ) as r:
                            at = (await r.json())["at"]
                    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                        log.warning("waiting for a reply failed: %s", exc)
                        at = None
                    done[i] = None if at is None else float(at)

        tasks = [asyncio.create_task(sender()) for _ in range(min(self.concurrency, len(plan)))]
        try:
            async with asyncio.timeout(within):
                await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return results, done

    async def open_loop(
        self, plan: list[tuple[int, bytes]], rate: float, within: float
    ) -> list[Sent | None]:
        """One update every ``1/rate`` s on a fixed schedule, however the server copes."""
        results: list[Sent | None] = [None] * len(plan)
        locks = {chat: asyncio.Lock() for chat, _ in plan}
        tasks: list[asyncio.Task[None]] = []

        async def one(i: int, due: float) -> None:
            chat, body = plan[i]
            async with locks[chat]:
                started, answered, status = await self._post(body)
            results[i] = Sent(due, started, answered, status)

        t0 = time.monotonic() + 0.1
        self.failures = 0
        try:
            async with asyncio.timeout(within):
                for i in range(len(plan)):
                    if self.aborted:
                        break
                    due = t0 + i / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(one(i, due)))
                await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return results

    # ---------------------------------------------------------------- the stand-in
    async def reset(self) -> None:
        async with self.control.post(self.standin + "/bench/reset") as resp:
            resp.raise_for_status()

    async def replies(self) -> int:
        async with self.control.get(self.standin + "/bench/stats") as resp:
            resp.raise_for_status()
            return int((await resp.json())["counts"].get("sendMessage", 0))

    async def sent_at(self) -> dict[int, list[float]]:
        async with self.control.get(self.standin + "/bench/dump") as resp:
            resp.raise_for_status()
            data = await resp.json()
        return {int(k): v for k, v in data["sent_at"].items()}

    async def wait_replies(self, expected: int, stall: float, within: float) -> int:
        """Poll the stand-in until ``expected`` replies arrived or nothing moved for ``stall``."""
        deadline = time.monotonic() + within
        last, moved = -1, time.monotonic()
        while True:
            got = await self.replies()
            if got >= expected:
                return got
            now = time.monotonic()
            if got != last:
                last, moved = got, now
            if now - moved > stall or now > deadline:
                log.warning("gave up waiting: %d of %d replies", got, expected)
                return got
            await asyncio.sleep(0.1)

    async def wait_complete(
        self, plan: list[tuple[int, bytes]], k: int, stall: float, within: float
    ) -> dict[int, list[float]]:
        """Wait until every chat of ``plan`` has its replies (or nothing moves for
        ``stall``); the stand-in's arrival times per chat."""
        expected = Counter(chat for chat, _ in plan)
        await self.wait_replies(len(plan) * k, stall, within)
        deadline = time.monotonic() + within
        last, moved = -1, time.monotonic()
        while True:
            sent_at = await self.sent_at()
            short = sum(max(0, n * k - len(sent_at.get(c, ()))) for c, n in expected.items())
            now = time.monotonic()
            if short != last:
                last, moved = short, now
            if short == 0 or now - moved > stall or now > deadline:
                if short:
                    log.warning("%d replies never arrived", short)
                return sent_at
            await asyncio.sleep(0.5)

    async def settle(self, quiet: float) -> int:
        """The reply count once it stopped moving for ``quiet`` seconds."""
        last, since = await self.replies(), time.monotonic()
        while time.monotonic() - since < quiet:
            await asyncio.sleep(0.1)
            got = await self.replies()
            if got != last:
                last, since = got, time.monotonic()
        return last


def match(
    plan: list[tuple[int, bytes]],
    sent: list[Sent | None],
    sent_at: dict[int, list[float]],
    k: int,
) -> list[float | None]:
    """Per update, when its last reply reached the stand-in (None: never). A chat's
    updates were accepted one after the other, so its j-th reply group is its j-th
    accepted update's."""
    seen: Counter[int] = Counter()
    done: list[float | None] = []
    for (chat, _), s in zip(plan, sent, strict=True):
        if s is None or s.status != 200:
            done.append(None)
            continue
        j = seen[chat]
        seen[chat] += 1
        times = sent_at.get(chat, [])
        last = (j + 1) * k - 1
        done.append(times[last] if last < len(times) else None)
    return done


def accepted(plan: list[tuple[int, bytes]], sent: list[Sent | None]) -> list[tuple[int, bytes]]:
    return [p for p, s in zip(plan, sent, strict=True) if s is not None and s.status == 200]


def summarise(
    plan: list[tuple[int, bytes]],
    sent: list[Sent | None],
    sent_at: dict[int, list[float]] | None,
    k: int,
    done: list[float | None] | None = None,
) -> dict[str, Any]:
    """Rates and latencies of one phase. ``done``: when each update's replies arrived
    (else matched from ``sent_at``)."""
    if done is None:
        done = match(plan, sent, sent_at or {}, k)
    posted = [s for s in sent if s is not None]
    ok = [s for s in posted if s.status == 200]
    statuses = Counter(s.status for s in posted)
    first = min((s.started for s in posted), default=0.0)
    last_answer = max((s.answered for s in posted), default=first)
    completed = [(s, d) for s, d in zip(sent, done, strict=True) if s is not None and d is not None]
    last_reply = max((d for _, d in completed), default=first)
    e2e = [d - s.due for s, d in completed]
    out = {
        "updates": len(plan),
        "posted": len(posted),
        "http_200": len(ok),
        "http_other": {str(code): n for code, n in statuses.items() if code != 200},
        "completed": len(completed),
        "webhook_accept_per_s": _rate(len(ok), last_answer - first),
        "updates_per_s": _rate(len(completed), last_reply - first),
        "p50_ms": pct(e2e, 0.5),
        "p90_ms": pct(e2e, 0.9),
        "p99_ms": pct(e2e, 0.99),
        "max_ms": pct(e2e, 1.0),
        "http_p50_ms": pct([s.answered - s.started for s in ok], 0.5),
        "http_p99_ms": pct([s.answered - s.started for s in ok], 0.99),
        "wall_s": round(last_reply - first, 3),
    }
    if sent_at is not None:
        # replies beyond ``k`` per accepted update: the same reply delivered twice
        expected = Counter(chat for chat, _ in accepted(plan, sent))
        extra = {c: len(sent_at.get(c, ())) - n * k for c, n in expected.items()}
        out["extra_replies"] = sum(v for v in extra.values() if v > 0)
        out["chats_with_extra_replies"] = sum(v > 0 for v in extra.values())
    return out


# --------------------------------------------------------------------------- PostgreSQL
class Postgres:
    def __init__(self, host: str, port: int, user: str) -> None:
        self.host, self.port, self.user = host, port, user

    def url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{dbname}"

    async def execute(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            host=self.host, port=self.port, user=self.user, database="postgres", timeout=10
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def recreate(self, dbname: str) -> None:
        await self.drop(dbname)
        await self.execute(f'CREATE DATABASE "{dbname}"')

    async def drop(self, dbname: str) -> None:
        await self.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


# --------------------------------------------------------------------------- phases
def server_metrics(text: str) -> dict[str, float]:
    """The few Prometheus counters worth reporting."""
    out: dict[str, float] = {}
    wanted = re.compile(
        r"^(kaspro_(?:messages_in|messages_out|messages_duplicate|delivery_failures|errors)"
        r"_total)(\{[^}]*\})?\s+([0-9.eE+-]+)$"
    )
    for line in text.splitlines():
        m = wanted.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


async def run_bare(opts: Options, tmp: Path, standin_url: str) -> dict[str, Any]:
    port = free_port()
    child = Child(
        "bare",
        [sys.executable, str(SCRIPT), "--role", "bare", "--port", str(port)],
        tmp,
        child_env(),
    )
    gen = LoadGen(f"http://127.0.0.1:{port}", standin_url, opts.concurrency, opts.text)
    try:
        await wait_healthy(child, f"http://127.0.0.1:{port}/healthz")
        warm = gen.plan(range(WARMUP_CHATS_FROM, WARMUP_CHATS_FROM + opts.warmup_chats), 500)
        await gen.closed_loop(warm, opts.phase_timeout)
        plan = gen.plan(range(MAIN_CHATS_FROM, MAIN_CHATS_FROM + opts.chats), opts.updates)
        meter = CpuMeter({"bare": child.pid})
        meter.begin()
        sent = await gen.closed_loop(plan, opts.phase_timeout)
        cpu = meter.end(len(plan))
    finally:
        await gen.close()
        child.stop()
    posted = [s for s in sent if s is not None]
    ok = [s for s in posted if s.status == 200]
    first = min(s.started for s in posted)
    last = max(s.answered for s in posted)
    return {
        "requests_per_s": _rate(len(ok), last - first),
        "p50_ms": pct([s.answered - s.started for s in ok], 0.5),
        "p99_ms": pct([s.answered - s.started for s in ok], 0.99),
        "requests": len(posted),
        "http_200": len(ok),
        "cpu": cpu,
    }


async def run_backend(
    name: str, url: str, opts: Options, tmp: Path, standin: Child, standin_url: str
) -> dict[str, Any]:
    from storage.migrate import upgrade

    await upgrade(url)
    port = free_port()
    env = child_env(
        {
            "KASPRO_DATABASE_URL": url,
            "KASPRO_SECRET_KEY": secrets.token_hex(32),
            "KASPRO_TELEGRAM_TOKEN": TOKEN,
            "KASPRO_TELEGRAM_WEBHOOK_SECRET": SECRET,
            "KASPRO_TELEGRAM_API_URL": standin_url,
            "KASPRO_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "KASPRO_LOG_LEVEL": opts.server_log_level,
            **{f"KASPRO_TELEGRAM__{k.upper()}": str(v) for k, v in RATE_LIMITS.items()},
        }
    )
    server = Child(
        f"server-{name}",
        [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        tmp,
        env,
    )
    base = f"http://127.0.0.1:{port}"
    gen = LoadGen(base, standin_url, opts.concurrency, opts.text)
    pids = {"server": server.pid, "standin": standin.pid}
    is_pg = name.startswith("postgres")
    out: dict[str, Any] = {}
    spy: subprocess.Popen[bytes] | None = None

    def bounds() -> tuple[float, float]:
        """(stall, limit) for waiting on replies: short once the server is failing."""
        if gen.aborted:
            return min(opts.stall_timeout, 20.0), min(opts.phase_timeout, 120.0)
        return opts.stall_timeout, opts.phase_timeout

    try:
        await wait_healthy(server, base + "/healthz")
        out["rss_mb_start"] = proc_mem_mb(server.pid).get("VmRSS")

        # 1. warm-up, and how many replies one update gets
        await gen.reset()
        warm_chats = range(WARMUP_CHATS_FROM, WARMUP_CHATS_FROM + opts.warmup_chats)
        warm = gen.plan(warm_chats, opts.warmup)
        await gen.closed_loop(warm, opts.phase_timeout)
        await gen.wait_replies(opts.warmup, *bounds())
        got = await gen.settle(2.0)
        per_chat = Counter(chat for chat, _ in warm)
        ratios = Counter(
            len(times) // per_chat[chat]
            for chat, times in (await gen.sent_at()).items()
            if chat in per_chat and len(times) % per_chat[chat] == 0
        )
        k = max(1, ratios.most_common(1)[0][0] if ratios else 1)
        out["replies_per_update"] = k
        out["warmup"] = {"updates": len(warm), "replies": got, "webhook_errors": gen.failures}
        chats_seen = len(warm_chats)
        handled = {c for c, times in (await gen.sent_at()).items() if len(times) >= k}

        # 2. maximum rate, closed loop
        await gen.reset()
        main_chats = range(MAIN_CHATS_FROM, MAIN_CHATS_FROM + opts.chats)
        plan = gen.plan(main_chats, opts.updates)
        if opts.py_spy:
            prof = Path(opts.profile_dir or tmp) / f"webhook-{name}-max.txt"
            spy = start_py_spy(opts.py_spy, server.pid, prof)
            out["profile"] = str(prof)
            await asyncio.sleep(1.0)
        meter = CpuMeter(pids, with_postgres=is_pg)
        meter.begin()
        sent = await gen.closed_loop(plan, opts.phase_timeout)
        sent_at = await gen.wait_complete(accepted(plan, sent), k, *bounds())
        cpu = meter.end(len(accepted(plan, sent)))
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
            spy = None
        handled |= {c for c, times in sent_at.items() if len(times) >= k}
        peak = summarise(plan, sent, sent_at, k)
        peak["aborted"] = gen.aborted
        peak["cpu"] = cpu
        out["max_rate"] = peak
        for key in ("updates_per_s", "p50_ms", "p99_ms", "webhook_accept_per_s"):
            out[key] = peak[key]
        out["http_p50_ms"], out["http_p99_ms"] = peak["http_p50_ms"], peak["http_p99_ms"]
        out["rss_mb_after_max"] = proc_mem_mb(server.pid).get("VmRSS")
        chats_seen += len(main_chats)

        # 3. saturated without a backlog: each sender waits for its update's replies
        if opts.bounded_updates and not gen.aborted:
            await gen.reset()
            plan = gen.plan(main_chats, opts.bounded_updates)
            meter = CpuMeter(pids, with_postgres=is_pg)
            meter.begin()
            sent, done = await gen.e2e_closed_loop(plan, k, opts.phase_timeout)
            cpu = meter.end(len(accepted(plan, sent)))
            bounded = summarise(plan, sent, None, k, done)
            bounded["in_flight"] = opts.concurrency
            bounded["aborted"] = gen.aborted
            bounded["cpu"] = cpu
            out["bounded"] = bounded
            out["updates_per_s_bounded"] = bounded["updates_per_s"]

        # 4. half the maximum rate, open loop
        rate = max(peak["updates_per_s"], out.get("updates_per_s_bounded") or 0.0) / 2
        n = int(rate * opts.half_rate_seconds)
        if n >= 10:
            await gen.reset()
            plan = gen.plan(main_chats, n)
            meter = CpuMeter(pids, with_postgres=is_pg)
            meter.begin()
            sent = await gen.open_loop(plan, rate, opts.phase_timeout)
            sent_at = await gen.wait_complete(accepted(plan, sent), k, *bounds())
            cpu = meter.end(len(accepted(plan, sent)))
            half = summarise(plan, sent, sent_at, k)
            half["target_per_s"] = round(rate, 1)
            lag = [s.started - s.due for s in sent if s is not None]
            half["generator_lag_p99_ms"] = pct(lag, 0.99)
            half["aborted"] = gen.aborted
            half["cpu"] = cpu
            out["half_rate"] = half
            out["p99_ms_at_half_rate"] = half["p99_ms"]
        else:
            out["half_rate"] = {"skipped": f"{rate}/s for {opts.half_rate_seconds}s: too few"}
            out["p99_ms_at_half_rate"] = None

        # 5. memory after ``rss_chats`` distinct chats
        fresh = max(0, opts.rss_chats - chats_seen)
        if fresh:
            await gen.reset()
            before = proc_mem_mb(server.pid).get("VmRSS") or 0.0
            plan = gen.plan(range(RSS_CHATS_FROM, RSS_CHATS_FROM + fresh), fresh)
            # at most ``concurrency`` in flight: memory per chat, not per queued update
            sent, done = await gen.e2e_closed_loop(plan, k, opts.phase_timeout)
            after = proc_mem_mb(server.pid).get("VmRSS") or 0.0
            answered = {chat for (chat, _), d in zip(plan, done, strict=True) if d is not None}
            out["rss_phase"] = {
                "updates": len(plan),
                "posted": sum(s is not None for s in sent),
                "http_200": sum(s is not None and s.status == 200 for s in sent),
                "completed": len(answered),
                "aborted": gen.aborted,
                "rss_mb_before": before,
                "kb_per_new_chat": round((after - before) * 1024 / max(len(answered), 1), 2),
            }
            handled |= answered
            chats_seen += fresh
        await asyncio.sleep(1.0)
        mem = proc_mem_mb(server.pid)
        out["rss_mb_10k_chats"] = mem.get("VmRSS")
        out["rss_hwm_mb"] = mem.get("VmHWM")
        out["distinct_chats"] = len(handled)  # chats whose messages were answered
        out["distinct_chats_sent"] = chats_seen
        async with gen.control.get(base + "/metrics") as resp:
            out["server_metrics"] = server_metrics(await resp.text())
    except Exception as exc:  # report what was measured, and why it stopped
        log.exception("%s benchmark failed", name)
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if spy is not None:
            spy.kill()
            spy.wait(5)
        await gen.close()
        server.stop()
        out["server_log"] = summarise_log(server, name, opts.logs_dir)
    return out


def summarise_log(server: Child, name: str, keep_in: str | None) -> dict[str, Any]:
    """What the server wrote to its log (stderr), by logger; kept in ``keep_in``."""
    try:
        text = server.err_path.read_text(errors="replace")
    except OSError:
        text = ""
    lines = text.splitlines()
    out = {
        "lines": len(lines),
        "bytes": len(text.encode()),
        "errors": sum('"level": "error"' in ln or " ERROR " in ln for ln in lines),
        "warnings": sum('"level": "warning"' in ln or " WARNING " in ln for ln in lines),
        "lines_naming_the_bot_token": sum(TOKEN.split(":")[1] in ln for ln in lines),
        "by_logger": dict(Counter(_logger_of(ln) for ln in lines).most_common(8)),
        "top_problems": _problems(lines),
    }
    if keep_in:
        keep = Path(keep_in)
        keep.mkdir(parents=True, exist_ok=True)
        (keep / f"webhook-{name}-server.log").write_text(text)
    if out["errors"]:
        log.warning("%s server logged errors; last lines:\n%s", name, server.stderr_tail(8))
    return out


def _problems(lines: list[str]) -> dict[str, int]:
    """Warnings and errors by message and the last line of their traceback."""
    found: Counter[str] = Counter()
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("level") not in ("warning", "error", "critical"):
            continue
        exc = str(rec.get("exc") or "").strip().splitlines()
        found[f"{rec.get('msg')}{': ' + exc[-1][:160] if exc else ''}"] += 1
    return dict(found.most_common(5))


def _logger_of(line: str) -> str:
    try:
        return str(json.loads(line).get("logger", "?"))
    except ValueError:
        return "(not json)"


# --------------------------------------------------------------------------- output
def targets(result: dict[str, Any], rss_chats: int) -> dict[str, bool | None]:
    """Which targets are met (None: not measured, e.g. fewer chats were answered)."""
    bare = (result.get("bare_aiohttp") or {}).get("requests_per_s")
    out: dict[str, bool | None] = {}
    for name in ("sqlite", "postgres"):
        r = result.get(name) or {}
        if "updates_per_s" not in r:
            continue
        ratio = _ratio(r["updates_per_s"], bare)
        r["ratio_vs_bare"] = ratio
        out[f"{name}_ge_30pct_of_bare"] = None if ratio is None else ratio >= TARGET_VS_BARE
        p99 = r.get("p99_ms_at_half_rate")
        out[f"{name}_p99_at_half_rate_le_50ms"] = (
            None if p99 is None else p99 <= TARGET_P99_HALF_RATE_MS
        )
        rss = r.get("rss_mb_10k_chats")
        enough = (r.get("distinct_chats") or 0) >= rss_chats
        out[f"{name}_rss_10k_chats_le_250mb"] = (
            None if rss is None or not enough else rss <= TARGET_RSS_MB
        )
    return out


def human(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"webhook benchmark: {cfg['updates']} updates over {cfg['chats']} chats, "
        f"{cfg['concurrency']} senders, text {cfg['text']!r} ({result['elapsed_s']}s in all; "
        f"{cfg['cpus']} CPUs, load {cfg['loadavg_1m_before']} before, "
        f"{cfg['loadavg_1m_after']} after)"
    ]
    bare = result.get("bare_aiohttp") or {}
    if "requests_per_s" in bare:
        lines.append(
            f"bare aiohttp: {bare['requests_per_s']} requests/s, p50 {bare['p50_ms']} ms, "
            f"p99 {bare['p99_ms']} ms"
        )
    elif bare:
        lines.append(f"bare aiohttp: {bare}")
    for name in ("sqlite", "postgres", "postgres_few_chats"):
        r = result.get(name) or {}
        if r.get("skipped"):
            lines.append(f"{name}: skipped")
            continue
        peak = r.get("max_rate") or {}
        cpu = peak.get("cpu") or {}
        half = r.get("half_rate") or {}
        bounded = r.get("bounded") or {}
        logs = r.get("server_log") or {}
        lines += [
            name + (f"  (ERROR {r['error']})" if "error" in r else ""),
            f"  end to end {r.get('updates_per_s')} updates/s (webhook accepts "
            f"{r.get('webhook_accept_per_s')}/s), {r.get('ratio_vs_bare')} of bare; "
            f"{peak.get('completed')} of {peak.get('updates')} answered, "
            f"HTTP errors {peak.get('http_other')}, duplicate replies {peak.get('extra_replies')}",
            f"  at max: p50 {r.get('p50_ms')} ms, p99 {r.get('p99_ms')} ms "
            f"(HTTP p50 {r.get('http_p50_ms')} ms, p99 {r.get('http_p99_ms')} ms)",
            f"  {bounded.get('in_flight')} in flight end to end: {bounded.get('updates_per_s')} "
            f"updates/s, p50 {bounded.get('p50_ms')} ms, p99 {bounded.get('p99_ms')} ms",
            f"  at half rate ({half.get('target_per_s')}/s): p50 {half.get('p50_ms')} ms, "
            f"p99 {r.get('p99_ms_at_half_rate')} ms",
            f"  RSS {r.get('rss_mb_10k_chats')} MB after {r.get('distinct_chats')} chats "
            f"(start {r.get('rss_mb_start')}, peak {r.get('rss_hwm_mb')})",
            f"  server CPU {cpu.get('server_ms_per_update')} ms/update "
            f"(util {cpu.get('server_util')}); stand-in {cpu.get('standin_util')}, "
            f"generator {cpu.get('loadgen_util')}"
            + (f", postgres {cpu.get('postgres_util')}" if "postgres_util" in cpu else ""),
            f"  server log: {logs.get('lines')} lines {logs.get('by_logger')}; "
            f"problems {logs.get('top_problems')}",
        ]
    lines.append(f"targets: {json.dumps(result.get('targets', {}))}")
    return "\n".join(lines)


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


async def amain(opts: Options) -> tuple[dict[str, Any], bool]:
    result: dict[str, Any] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="kaspro-bench-webhook-") as tmp_name:
        tmp = Path(tmp_name)
        standin_port = free_port()
        standin_url = f"http://127.0.0.1:{standin_port}"
        standin = Child(
            "standin",
            [
                sys.executable,
                str(SCRIPT),
                "--role",
                "standin",
                "--port",
                str(standin_port),
            ],
            tmp,
            child_env(),
        )
        pg = Postgres(opts.pg_host, opts.pg_port, opts.pg_user)
        try:
            await wait_healthy(standin, standin_url + "/bench/stats")
            if opts.skip_bare:
                result["bare_aiohttp"] = {"skipped": True}
            else:
                try:
                    result["bare_aiohttp"] = await run_bare(opts, tmp, standin_url)
                except Exception as exc:
                    log.exception("bare aiohttp benchmark failed")
                    result["bare_aiohttp"] = {"error": f"{type(exc).__name__}: {exc}"}
                    failed = True
            few = replace(
                opts,
                chats=opts.pg_few_chats,
                concurrency=opts.pg_few_chats,
                warmup_chats=opts.pg_few_chats,
                updates=min(opts.updates, 5_000),
                bounded_updates=min(opts.bounded_updates, 2_000),
                rss_chats=0,
            )
            runs = (
                ("sqlite", opts.skip_sqlite, opts),
                ("postgres", opts.skip_postgres, opts),
                ("postgres_few_chats", opts.skip_postgres or opts.pg_few_chats < 1, few),
            )
            for name, skip, run_opts in runs:
                if skip:
                    result[name] = {"skipped": True}
                    continue
                try:
                    if name.startswith("postgres"):
                        await pg.recreate(PG_DB)
                        url = pg.url(PG_DB)
                    else:
                        url = f"sqlite+aiosqlite:///{tmp / 'kaspro.db'}"
                    try:
                        result[name] = await run_backend(
                            name, url, run_opts, tmp, standin, standin_url
                        )
                    finally:
                        if name.startswith("postgres"):
                            await pg.drop(PG_DB)
                except Exception as exc:
                    log.exception("%s benchmark failed", name)
                    result[name] = {"error": f"{type(exc).__name__}: {exc}"}
                r = result[name]
                if name == "postgres_few_chats" and not r.get("skipped"):
                    r["config"] = {
                        "chats": few.chats,
                        "concurrency": few.concurrency,
                        "updates": few.updates,
                        "why": "fewer chats in flight than half the connection pool",
                    }
                done = (r.get("max_rate") or {}).get("completed")
                failed = failed or "error" in r or (done is not None and done != run_opts.updates)
        finally:
            standin.stop()
    return result, failed


def main(argv: Sequence[str] | None = None) -> int:
    opts, as_json, raw = parse_args(argv)
    if raw.role == "standin":
        serve_standin(raw.port)
        return 0
    if raw.role == "bare":
        serve_bare(raw.port)
        return 0
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        force=True,
    )
    for noisy in ("alembic",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.monotonic()
    load_before = _loadavg()
    result, failed = asyncio.run(amain(opts))
    result["targets"] = targets(result, opts.rss_chats)
    import telegram

    result["config"] = {
        "updates": opts.updates,
        "chats": opts.chats,
        "concurrency": opts.concurrency,
        "warmup": opts.warmup,
        "text": opts.text,
        "half_rate_seconds": opts.half_rate_seconds,
        "rss_chats": opts.rss_chats,
        "telegram_rate_limits": RATE_LIMITS,
        "server": "python -m bot.cli serve (bot.server.serve), its own process",
        "standin": "tests.standins.telegram.FakeTelegram, its own process",
        "bare": "aiohttp app answering 200 after reading the body, its own process",
        "server_log_level": opts.server_log_level,
        "profiled": bool(opts.py_spy),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "python_telegram_bot": telegram.__version__,
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
