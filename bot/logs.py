"""Structured logging with personal data masked and secrets never written."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from wallet.masking import mask_text

# Fields whose values are dropped outright, whatever they hold.
SECRET_FIELDS = re.compile(r"pin|otp|token|password|secret|code_hash|auth", re.IGNORECASE)
_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _clean(key: str, value: Any) -> Any:
    if SECRET_FIELDS.search(key):
        return "[redacted]"
    if isinstance(value, str):
        return mask_text(value)
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                out[key] = _clean(key, value)
        if record.exc_info:
            out["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


class MaskingTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = {
            k: _clean(k, v)
            for k, v in record.__dict__.items()
            if k not in _STD and not k.startswith("_")
        }
        line = mask_text(super().format(record))
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


def setup_logging(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else MaskingTextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic announces every plugin it loads at INFO; operators need only its migrations.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # httpx logs every request's URL at INFO, and Bot API URLs carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
