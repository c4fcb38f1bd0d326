"""Collects tests/conversations/*.yaml: each script is a test, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.convo import ConvoFailure, load_script, run_script
from storage.migrate import upgrade
from tests.conftest import PG_SKIP_REASON, PG_URL, fresh_database_url, test_settings

_template: Path | None = None


async def _sqlite_template() -> Path:
    global _template
    if _template is None:
        path = Path(tempfile.mkdtemp(prefix="kaspro-convo-")) / "template.db"
        await upgrade(f"sqlite:///{path}")
        _template = path
    return _template


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml") and file_path.parent.name == "conversations":
        return ConversationFile.from_parent(parent, path=file_path)
    return None


class ConversationFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        script = load_script(self.path)
        for backend in ("sqlite", "postgres"):
            item = ConversationItem.from_parent(
                self, name=f"{self.path.stem}[{backend}]", script=script, backend=backend
            )
            if backend == "postgres" and PG_URL is None:
                item.add_marker(pytest.mark.skip(reason=PG_SKIP_REASON))
            yield item


class ConversationItem(pytest.Item):
    def __init__(self, *, script: dict[str, Any], backend: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.script = script
        self.backend = backend

    def runtest(self) -> None:
        async def play() -> None:
            tmp = Path(tempfile.mkdtemp(prefix="kaspro-convo-"))
            url = await fresh_database_url(self.backend, tmp, await _sqlite_template())
            overrides = self.script.get("settings") or {}
            await run_script(self.script, test_settings(url, **overrides), self.path.parent)

        asyncio.run(play())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ConvoFailure):
            return f"{self.script.get('name', self.path.stem)}\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"conversation: {self.script.get('name', self.name)}"
