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

    serve = sub.add_parser("serve", help="run the webhooks, callbacks and metrics server")
    serve.add_argument("--host", help="default: server.host from config")
    serve.add_argument("--port", type=int, help="default: server.port from config")
    serve.add_argument(
        "--telegram-polling",
        action="store_true",
        help="long-poll Telegram instead of receiving webhooks",
    )

    telegram = sub.add_parser("telegram", help="Telegram bot setup")
    telegram_sub = telegram.add_subparsers(dest="telegram_command", required=True)
    telegram_sub.add_parser("set-webhook", help="point Telegram at KASPRO_PUBLIC_URL")

    sub.add_parser(
        "reconcile", help="settle stale bill holds by asking the biller; expire tokens and holds"
    )

    convo = sub.add_parser("convo", help="scripted conversations")
    convo_sub = convo.add_subparsers(dest="convo_command", required=True)
    convo_run = convo_sub.add_parser("run", help="play conversation scripts (YAML)")
    convo_run.add_argument("files", nargs="+", help="conversation scripts")
    convo_run.add_argument("-q", "--quiet", action="store_true", help="only failures")

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


async def _reconcile(settings: Settings) -> int:
    from bot.server import Service

    db = Database.from_url(settings.database_url, pool_size=2)
    try:
        from wallet.service import Wallet

        service = Service(settings, db, Wallet(db, settings))
        bills = await service.billing.reconcile()
        tokens = await service.partners.expire_tokens()
        holds = await service.wallet.expire_holds()
    finally:
        await db.dispose()
    print(f"settled {bills} bill payment(s); expired {tokens} token(s); voided {holds} hold(s)")
    return 0


async def _set_webhook(settings: Settings) -> int:
    from bot.channels.telegram import make_bot

    if settings.telegram_token is None or settings.telegram_webhook_secret is None:
        print("set KASPRO_TELEGRAM_TOKEN and KASPRO_TELEGRAM_WEBHOOK_SECRET first")
        return 2
    bot = make_bot(settings.telegram_token.get_secret_value(), settings.telegram_api_url)
    url = settings.public_url.rstrip("/") + "/webhooks/telegram"
    async with bot:
        await bot.set_webhook(
            url,
            secret_token=settings.telegram_webhook_secret.get_secret_value(),
            allowed_updates=["message", "callback_query"],
        )
    print(f"Telegram will post updates to {url}")
    return 0


async def _convo_run(settings: Settings, files: Sequence[str], *, quiet: bool) -> int:
    """Play each script on a fresh SQLite database; print transcripts and diffs."""
    import tempfile
    from pathlib import Path

    from bot.convo import ConvoFailure, load_script, run_script
    from storage.migrate import upgrade

    failed = 0
    for name in files:
        path = Path(name)
        try:
            script = load_script(path)
        except (OSError, ValueError) as exc:
            print(f"✗ {name}: {exc}")
            failed += 1
            continue
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/convo.db"
            await upgrade(url)
            run_settings = settings.model_copy(update={"database_url": url})
            try:
                transcript = await run_script(script, run_settings, path.parent)
            except ConvoFailure as failure:
                failed += 1
                print(f"✗ {name}: {script.get('name', '')}\n{failure}\n")
                continue
        print(f"✓ {name}: {script.get('name', '')}")
        if not quiet:
            print("\n".join("    " + line for line in transcript) + "\n")
    print(f"{len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {"database_url": args.database_url} if args.database_url else {}
    settings = load_settings(**overrides)
    from bot.logs import setup_logging

    if args.command in ("chat", "convo"):  # the terminal is for conversations: warnings only
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
    if args.command == "serve":
        from bot.server import serve

        host = args.host or settings.server.host
        port = args.port or settings.server.port
        try:
            asyncio.run(serve(settings, host, port, args.telegram_polling))
        except KeyboardInterrupt:
            pass
        return 0
    if args.command == "telegram":
        return asyncio.run(_set_webhook(settings))
    if args.command == "reconcile":
        return asyncio.run(_reconcile(settings))
    if args.command == "convo":
        return asyncio.run(_convo_run(settings, args.files, quiet=args.quiet))
    if args.command == "ledger" and args.ledger_command == "check":
        return asyncio.run(_ledger_check(settings))
    if args.command == "ledger" and args.ledger_command == "expire-holds":
        return asyncio.run(_expire_holds(settings))
    return 2


if __name__ == "__main__":
    sys.exit(main())
