"""The operator command line and what the logs may contain."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from bot.logs import JsonFormatter
from wallet.config import load_settings
from wallet.masking import mask_name, mask_phone, mask_text


def kaspro(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_db_upgrade_then_ledger_check_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
    up = kaspro("--database-url", url, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    assert "latest schema" in up.stdout
    check = kaspro("--database-url", url, "ledger", "check")
    assert check.returncode == 0
    assert "ledger is clean" in check.stdout


def test_ledger_check_exits_1_with_a_readable_report(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite+aiosqlite:///{tmp_path}/bad.db"
    assert kaspro("--database-url", url, "db", "upgrade").returncode == 0
    con = sqlite3.connect(tmp_path / "bad.db")
    con.execute(
        "INSERT INTO accounts (code, group_code, shard, kind, balance, debits_pending,"
        " credits_pending, usage_month, usage_amount, created_at)"
        " VALUES ('fee_income:main#0', 'fee_income:main', 0, 'fee_income', 500, 0, 0, 0, 0,"
        " '2026-01-01 00:00:00')"
    )
    con.commit()
    con.close()
    check = kaspro("--database-url", url, "ledger", "check")
    assert check.returncode == 1
    assert "fee_income:main#0: balance 500 but entries say 0" in check.stdout
    assert "all accounts sum to 500" in check.stdout


def test_masking_of_personal_data() -> None:
    assert mask_phone("+6281234567890") == "+62812****7890"
    text = "call 081234567890 or mail budi.santoso@example.com, NIK 3171234567890001"
    masked = mask_text(text)
    assert "081234567890" not in masked and "budi.santoso" not in masked
    assert "3171234567890001" not in masked
    assert "b***@example.com" in masked and "3171********0001" in masked
    assert mask_name("Budi", "Santoso") == "Bu** Sa*****"


def test_json_logs_mask_people_and_drop_secrets() -> None:
    record = logging.LogRecord(
        "kaspro", logging.INFO, __file__, 1, "OTP sent to +6281234567890", None, None
    )
    record.pin = "246813"
    record.otp_code = "123456"
    record.email = "siti@example.com"
    out = json.loads(JsonFormatter().format(record))
    line = json.dumps(out)
    assert "+6281234567890" not in line and "246813" not in line and "123456" not in line
    assert out["pin"] == "[redacted]" and out["otp_code"] == "[redacted]"
    assert out["email"] == "s***@example.com"


def test_settings_come_from_yaml_with_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("limits:\n  regular_balance_cap: 1500000\nlog_level: DEBUG\n")
    monkeypatch.setenv("KASPRO_CONFIG", str(cfg))
    monkeypatch.setenv("KASPRO_LIMITS__PREMIUM_MONTHLY_CAP", "45000000")
    monkeypatch.setenv("KASPRO_DATABASE_URL", "sqlite:///elsewhere.db")
    s = load_settings()
    assert s.limits.regular_balance_cap == 1_500_000
    assert s.limits.premium_monthly_cap == 45_000_000
    assert s.limits.premium_balance_cap == 20_000_000  # default kept
    assert s.database_url == "sqlite:///elsewhere.db"
    assert s.log_level == "DEBUG"


def test_secrets_are_refused_in_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("secret_key: hunter2\n")
    monkeypatch.setenv("KASPRO_CONFIG", str(cfg))
    with pytest.raises(ValueError, match="environment"):
        load_settings()


def test_shipped_config_matches_the_defaults() -> None:
    import yaml

    from wallet.config import DEFAULT_CONFIG_PATH, SECRET_FIELDS, Settings

    shipped = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    defaults = Settings.model_construct().model_dump(exclude=set(SECRET_FIELDS))
    assert shipped == defaults
