"""Settings come from the environment and from matching `python -m app` flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.__main__ import parse_flags
from app.config import Settings
from app.storage import open_store
from app.storage.mongo import MongoSessionStore
from app.storage.sqlite import SqliteSessionStore

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_original_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORT", "MONGODB_URI", "DATA_DIR", "CORS_ORIGINS", "FRONTEND_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.port == 5000
    assert settings.session_ttl_seconds == 604800
    assert settings.save_debounce_seconds == 2 and settings.save_max_delay_seconds == 10
    assert settings.allowed_origins() == [f"http://localhost:{p}" for p in range(5173, 5178)]


def test_environment_names_are_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "5123")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("FRONTEND_URL", "https://app.example")
    monkeypatch.setenv("SAVE_DEBOUNCE_SECONDS", "0.5")
    settings = Settings()
    assert settings.port == 5123
    assert settings.save_debounce_seconds == 0.5
    assert settings.allowed_origins() == [
        "https://a.example",
        "https://b.example",
        "https://app.example",
    ]


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "5123")
    settings = Settings(**parse_flags(["--port", "6001", "--mongodb-db", "other"]))  # type: ignore[arg-type]
    assert settings.port == 6001
    assert settings.mongodb_db == "other"


def test_help_lists_every_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for name in Settings.model_fields:
        assert "--" + name.replace("_", "-") in result.stdout


def test_mongodb_uri_chooses_mongodb_else_sqlite(tmp_path: Path) -> None:
    sqlite = open_store(Settings(data_dir=tmp_path))
    assert isinstance(sqlite, SqliteSessionStore)
    assert sqlite.path == tmp_path / "sessions.sqlite3"
    mongo = open_store(Settings(mongodb_uri="mongodb://127.0.0.1:1", data_dir=tmp_path))
    assert isinstance(mongo, MongoSessionStore)
