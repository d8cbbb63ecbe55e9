"""The repository's pure parts: LIKE escaping and the choice of database (website/repository.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import Settings
from website.repository import SqliteRepository, contains_pattern, open_repository


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("东阿", "%东阿%"),
        ("100%", "%100\\%%"),
        ("a_b", "%a\\_b%"),
        ("back\\slash", "%back\\\\slash%"),
    ],
)
def test_search_text_is_escaped_for_like(text: str, pattern: str) -> None:
    """% and _ in a search are literal characters, not wildcards."""
    assert contains_pattern(text) == pattern


def test_sqlite_is_the_default(tmp_path: Path) -> None:
    """Without a database URL the website uses SQLite at website_db."""
    repository = open_repository(Settings(website_db=tmp_path / "w.sqlite3"))
    assert isinstance(repository, SqliteRepository)
    assert repository.description == f"SQLite at {tmp_path / 'w.sqlite3'}"


def test_postgresql_fails_at_start_up_naming_the_driver() -> None:
    """A PostgreSQL URL is refused with what to install, and the password is not repeated."""
    settings = Settings(website_database_url="postgresql://credit:s3cret@db/credit")
    with pytest.raises(NotImplementedError) as refused:
        open_repository(settings)
    message = str(refused.value)
    assert "psycopg" in message and "CREDIT_WEBSITE_DATABASE_URL" in message
    assert "s3cret" not in message
