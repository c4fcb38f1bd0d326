"""The ``kaspro`` command line for operators."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from storage.db import Database
from wallet.config import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kaspro", description="KasPro chat wallet")
    parser.add_argument("--database-url", help="overrides KASPRO_DATABASE_URL / config.yaml")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply every pending migration")

    chat = sub.add_parser("chat", help="chat with the bot in this terminal (SQLite by default)")
    chat.add_argument("--user", default="local", help="chat id of this terminal user")
    chat.add_argument("--lang", choices=("id", "en"), help="conversation language")

    ledger = sub.add_parser("ledger", help="the double-entry ledger")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    ledger_sub.add_parser("check", help="verify the books; exit 1 on any violation")
    ledger_sub.add_parser("expire-holds", help="void every hold past its expiry")
    return parser


async def _ledger_check(settings: Settings) -> int:
    from wallet.check import check_ledger
    from wallet.clock import SystemClock
    from wallet.ledger import Limits

    db = Database.from_url(settings.database_url, pool_size=1)
    try:
        report = await db.read(check_ledger, Limits(settings), SystemClock())
    finally:
        await db.dispose()
    print(report.render())
    return 0 if report.ok else 1


async def _expire_holds(settings: Settings) -> int:
    from wallet.service import Wallet

    db = Database.from_url(settings.database_url, pool_size=2)
    try:
        voided = await Wallet(db, settings).expire_holds()
    finally:
        await db.dispose()
    print(f"voided {voided} expired hold(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {"database_url": args.database_url} if args.database_url else {}
    settings = load_settings(**overrides)
    from bot.logs import setup_logging

    if args.command == "chat":  # the terminal is for the conversation: warnings only
        setup_logging("text", "WARNING")
    else:
        setup_logging(settings.log_format, settings.log_level)
    if args.command == "db":
        from storage.migrate import upgrade

        asyncio.run(upgrade(settings.database_url))
        print("database is at the latest schema")
        return 0
    if args.command == "chat":
        from bot.console import chat

        asyncio.run(chat(settings, user=args.user, lang=args.lang))
        return 0
    if args.command == "ledger" and args.ledger_command == "check":
        return asyncio.run(_ledger_check(settings))
    if args.command == "ledger" and args.ledger_command == "expire-holds":
        return asyncio.run(_expire_holds(settings))
    return 2


if __name__ == "__main__":
    sys.exit(main())
