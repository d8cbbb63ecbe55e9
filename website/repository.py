"""Where the website keeps publications: a small interface and its SQLite implementation.

:class:`PublicationRepository` is what the handlers use. :class:`SqliteRepository` implements it
with the standard library's ``sqlite3`` in WAL mode. Every call runs in a thread pool, so the
event loop never waits on the disk: writes go through a single writer thread (one connection,
``BEGIN IMMEDIATE`` per request, so the idempotency check, the revision check and the write are
one atomic step), reads through a few reader threads with their own read-only connections, which
WAL lets run while a write is in progress.

PostgreSQL (``CREDIT_WEBSITE_DATABASE_URL``) is not implemented: no PostgreSQL driver is
installed in this environment. :func:`open_repository` fails at start-up with a
:class:`NotImplementedError` that says what to install, rather than falling back silently.

All SQL is literal text with ``?``/``:name`` parameters; no value ever becomes part of a query.

Schema (version 1)::

    schema_migrations (version PK, applied_at)
    publications      (id PK, kind, subject_name, subject_code, plate, fields JSON,
                       decision_date, publication_end, revision, published_at, updated_at,
                       withdrawn_at, withdrawal_reason)
    idempotency_keys  (key PK, request_hash, response_status, response_body JSON, created_at)

Dates are ISO ``YYYY-MM-DD`` text and instants ISO 8601 UTC text with microseconds, so text
order is time order.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol, TypeVar

import orjson

from streams.settings import Settings
from website.model import (
    ApiResponse,
    IdempotencyKey,
    Kind,
    PublicationContent,
    PutAction,
    StoredPublication,
    Withdrawal,
    WithdrawalAction,
    WithdrawalReason,
    decide_put,
    decide_withdrawal,
    put_response,
    timestamp,
    withdrawal_response,
)

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

SCHEMA_VERSION: Final = 1
"""The schema version this code creates and expects."""


class RepositoryError(Exception):
    """The database cannot be used as it is (e.g. its schema is newer than this code)."""


class IdempotencyKeyReusedError(Exception):
    """An Idempotency-Key already used for a different request (HTTP 422)."""


class PublicationRepository(Protocol):
    """What the website needs from its database."""

    @property
    def description(self) -> str:
        """Which database this is, for logs; never includes a password."""
        ...

    async def start(self) -> None:
        """Connect and bring the schema up to :data:`SCHEMA_VERSION`."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...

    async def ping(self) -> None:
        """Raise unless the database answers a query."""
        ...

    async def put_publication(
        self,
        publication_id: str,
        content: PublicationContent,
        key: IdempotencyKey,
        now: datetime,
    ) -> ApiResponse:
        """Store or replace a publication, or replay the answer already given to ``key``.

        :raises IdempotencyKeyReusedError: when ``key`` came with a different request before.
        """
        ...

    async def withdraw_publication(
        self,
        publication_id: str,
        withdrawal: Withdrawal,
        key: IdempotencyKey,
        now: datetime,
    ) -> ApiResponse:
        """Withdraw a publication, or replay the answer already given to ``key``.

        :raises IdempotencyKeyReusedError: when ``key`` came with a different request before.
        """
        ...

    async def get_publication(self, publication_id: str) -> StoredPublication | None:
        """The stored record, withdrawn or not."""
        ...

    async def list_public(
        self, kind: Kind, today: date, limit: int, offset: int
    ) -> tuple[int, list[StoredPublication]]:
        """How many records of ``kind`` are public on ``today``, and one page of them, newest
        decision first."""
        ...

    async def search_public(
        self, text: str, today: date, limit: int, offset: int
    ) -> tuple[int, list[StoredPublication]]:
        """Public records whose subject name, subject code or plate contains ``text``
        (literally: ``%`` and ``_`` are not wildcards), and one page of them."""
        ...

    async def count_public(self, today: date) -> Mapping[Kind, int]:
        """How many records of each kind are public on ``today``."""
        ...

    async def purge_idempotency_keys(self, older_than: datetime) -> int:
        """Forget idempotency keys first seen before ``older_than``; how many were removed."""
        ...


# --- SQL ----------------------------------------------------------------------------------------

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
)
"""

MIGRATIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = (
    (
        1,
        (
            """
            CREATE TABLE publications (
                id                TEXT PRIMARY KEY,
                kind              TEXT NOT NULL
                                  CHECK (kind IN ('penalty', 'licensing', 'blacklist', 'redlist')),
                subject_name      TEXT NOT NULL,
                subject_code      TEXT NOT NULL,
                plate             TEXT,
                fields            TEXT NOT NULL,
                decision_date     TEXT NOT NULL,
                publication_end   TEXT,
                revision          INTEGER NOT NULL CHECK (revision >= 0),
                published_at      TEXT NOT NULL,
                updated_at        TEXT NOT NULL,
                withdrawn_at      TEXT,
                withdrawal_reason TEXT
                                  CHECK (withdrawal_reason IN
                                         ('revoked', 'expired', 'repaired', 'objection_upheld'))
            )
            """,
            """
            CREATE INDEX publications_public_by_kind
                ON publications (kind, decision_date DESC, published_at DESC)
                WHERE withdrawn_at IS NULL
            """,
            """
            CREATE TABLE idempotency_keys (
                key             TEXT PRIMARY KEY,
                request_hash    TEXT NOT NULL,
                response_status INTEGER NOT NULL,
                response_body   TEXT NOT NULL,
                created_at      TEXT NOT NULL
            )
            """,
            "CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at)",
        ),
    ),
)
"""Schema changes by version, applied in order, each in one transaction."""

_SELECT_PUBLICATION = """
SELECT id, kind, subject_name, subject_code, plate, fields, decision_date, publication_end,
       revision, published_at, updated_at, withdrawn_at, withdrawal_reason
  FROM publications
 WHERE id = ?
"""

_INSERT_PUBLICATION = """
INSERT INTO publications (id, kind, subject_name, subject_code, plate, fields, decision_date,
                          publication_end, revision, published_at, updated_at)
VALUES (:id, :kind, :subject_name, :subject_code, :plate, :fields, :decision_date,
        :publication_end, :revision, :published_at, :updated_at)
"""

_UPDATE_PUBLICATION = """
UPDATE publications
   SET kind = :kind, subject_name = :subject_name, subject_code = :subject_code, plate = :plate,
       fields = :fields, decision_date = :decision_date, publication_end = :publication_end,
       revision = :revision, published_at = :published_at, updated_at = :updated_at,
       withdrawn_at = NULL, withdrawal_reason = NULL
 WHERE id = :id
"""

_WITHDRAW_PUBLICATION = """
UPDATE publications
   SET revision = :revision, withdrawn_at = :withdrawn_at, withdrawal_reason = :reason,
       updated_at = :updated_at
 WHERE id = :id
"""

_SELECT_RESPONSE = """
SELECT request_hash, response_status, response_body FROM idempotency_keys WHERE key = ?
"""

_INSERT_RESPONSE = """
INSERT INTO idempotency_keys (key, request_hash, response_status, response_body, created_at)
VALUES (?, ?, ?, ?, ?)
"""

_PURGE_KEYS = "DELETE FROM idempotency_keys WHERE created_at < ?"

# "Public": not withdrawn, and not past publication_end (the last day shown).
_COUNT_PUBLIC_BY_KIND = """
SELECT kind, COUNT(*) FROM publications
 WHERE withdrawn_at IS NULL AND (publication_end IS NULL OR publication_end >= :today)
 GROUP BY kind
"""

_COUNT_PUBLIC_OF_KIND = """
SELECT COUNT(*) FROM publications
 WHERE kind = :kind
   AND withdrawn_at IS NULL AND (publication_end IS NULL OR publication_end >= :today)
"""

_PAGE_PUBLIC_OF_KIND = """
SELECT id, kind, subject_name, subject_code, plate, fields, decision_date, publication_end,
       revision, published_at, updated_at, withdrawn_at, withdrawal_reason
  FROM publications
 WHERE kind = :kind
   AND withdrawn_at IS NULL AND (publication_end IS NULL OR publication_end >= :today)
 ORDER BY decision_date DESC, published_at DESC, id
 LIMIT :limit OFFSET :offset
"""

_COUNT_SEARCH = """
SELECT COUNT(*) FROM publications
 WHERE withdrawn_at IS NULL AND (publication_end IS NULL OR publication_end >= :today)
   AND (subject_name LIKE :pattern ESCAPE '\\'
        OR subject_code LIKE :pattern ESCAPE '\\'
        OR plate LIKE :pattern ESCAPE '\\')
"""

_PAGE_SEARCH = """
SELECT id, kind, subject_name, subject_code, plate, fields, decision_date, publication_end,
       revision, published_at, updated_at, withdrawn_at, withdrawal_reason
  FROM publications
 WHERE withdrawn_at IS NULL AND (publication_end IS NULL OR publication_end >= :today)
   AND (subject_name LIKE :pattern ESCAPE '\\'
        OR subject_code LIKE :pattern ESCAPE '\\'
        OR plate LIKE :pattern ESCAPE '\\')
 ORDER BY decision_date DESC, published_at DESC, id
 LIMIT :limit OFFSET :offset
"""

LIKE_ESCAPE: Final = "\\"
"""The ESCAPE character of every LIKE above."""


def contains_pattern(text: str) -> str:
    """A LIKE pattern matching values that contain ``text`` literally.

    ``\\``, ``%`` and ``_`` are escaped with :data:`LIKE_ESCAPE`, so a search for ``100%`` finds
    "100%" and not every value starting with "100".
    """
    escaped = (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return f"%{escaped}%"


def _publication_from_row(row: sqlite3.Row | tuple[Any, ...]) -> StoredPublication:
    (
        publication_id,
        kind,
        subject_name,
        subject_code,
        plate,
        fields,
        decision_date,
        publication_end,
        revision,
        published_at,
        updated_at,
        withdrawn_at,
        withdrawal_reason,
    ) = row
    content = PublicationContent(
        kind=Kind(kind),
        subject_name=subject_name,
        subject_code=subject_code,
        plate=plate,
        fields=MappingProxyType(orjson.loads(fields)),
        decision_date=date.fromisoformat(decision_date),
        publication_end=date.fromisoformat(publication_end) if publication_end else None,
        revision=revision,
    )
    return StoredPublication(
        publication_id=publication_id,
        content=content,
        published_at=datetime.fromisoformat(published_at),
        updated_at=datetime.fromisoformat(updated_at),
        withdrawn_at=datetime.fromisoformat(withdrawn_at) if withdrawn_at else None,
        withdrawal_reason=WithdrawalReason(withdrawal_reason) if withdrawal_reason else None,
    )


def _content_parameters(
    publication_id: str, content: PublicationContent, published_at: datetime, now: datetime
) -> dict[str, object]:
    return {
        "id": publication_id,
        "kind": content.kind.value,
        "subject_name": content.subject_name,
        "subject_code": content.subject_code,
        "plate": content.plate,
        "fields": orjson.dumps(dict(content.fields)).decode(),
        "decision_date": content.decision_date.isoformat(),
        "publication_end": (
            content.publication_end.isoformat() if content.publication_end else None
        ),
        "revision": content.revision,
        "published_at": timestamp(published_at),
        "updated_at": timestamp(now),
    }


@contextmanager
def _transaction(connection: sqlite3.Connection, *, write: bool = True) -> Iterator[None]:
    """One explicit transaction (the connections run in autocommit mode otherwise).

    A write transaction takes the write lock at once (``BEGIN IMMEDIATE``), so that what it read
    cannot change before it writes.
    """
    connection.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


class SqliteRepository:
    """:class:`PublicationRepository` on a SQLite file in WAL mode."""

    def __init__(self, path: Path, *, readers: int = 4, busy_timeout_seconds: float = 5.0) -> None:
        """
        :param path: the database file; created, with its folder, when missing.
        :param readers: threads (each with its own connection) serving reads.
        :param busy_timeout_seconds: how long a statement waits for another process's lock.
        """
        self._path = path
        self._reader_count = readers
        self._busy_timeout_seconds = busy_timeout_seconds
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None

    @property
    def description(self) -> str:
        return f"SQLite at {self._path}"

    # --- threads and connections ----------------------------------------------------------------

    def _connection(self, *, read_only: bool) -> sqlite3.Connection:
        """This thread's connection, opened on first use (each pool thread keeps its own)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_seconds,
                isolation_level=None,  # autocommit; transactions are explicit
                check_same_thread=False,  # closed by close(), from another thread
            )
            # FULL: a publication acknowledged to the publisher survives a power cut, not only a
            # crash of this process (NORMAL would risk the last transactions in WAL mode).
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")
            if read_only:
                connection.execute("PRAGMA query_only = ON")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    async def _run(self, executor: ThreadPoolExecutor | None, call: Callable[[], _T]) -> _T:
        if executor is None:
            raise RepositoryError("the repository is not started")
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    async def _write(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._run(self._writer, lambda: call(self._connection(read_only=False)))

    async def _read(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._run(self._readers, lambda: call(self._connection(read_only=True)))

    # --- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._writer is not None:
            return
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="website-db-write")
        self._readers = ThreadPoolExecutor(
            max_workers=self._reader_count, thread_name_prefix="website-db-read"
        )
        try:
            await self._write(self._migrate)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        writer, readers = self._writer, self._readers
        self._writer = self._readers = None
        for executor in (writer, readers):
            if executor is not None:
                await asyncio.get_running_loop().run_in_executor(
                    None, functools.partial(executor.shutdown, wait=True)
                )
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def _migrate(self, connection: sqlite3.Connection) -> None:
        (journal_mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(journal_mode).lower() != "wal":
            raise RepositoryError(f"{self.description} cannot use WAL (mode {journal_mode})")
        with _transaction(connection):
            connection.execute(_MIGRATIONS_TABLE)
            (current,) = connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
            ).fetchone()
            if current > SCHEMA_VERSION:
                raise RepositoryError(
                    f"{self.description} has schema version {current}; this code knows up to "
                    f"{SCHEMA_VERSION}: run a newer release"
                )
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, timestamp(datetime.now(UTC))),
                )
                logger.info("%s: applied schema migration %d", self.description, version)

    async def ping(self) -> None:
        await self._read(lambda connection: connection.execute("SELECT 1").fetchone())

    # --- writes ---------------------------------------------------------------------------------

    @staticmethod
    def _select(connection: sqlite3.Connection, publication_id: str) -> StoredPublication | None:
        row = connection.execute(_SELECT_PUBLICATION, (publication_id,)).fetchone()
        return None if row is None else _publication_from_row(row)

    @staticmethod
    def _replay(connection: sqlite3.Connection, key: IdempotencyKey) -> ApiResponse | None:
        row = connection.execute(_SELECT_RESPONSE, (key.key,)).fetchone()
        if row is None:
            return None
        request_hash, _status, body_json = row
        if request_hash != key.request_hash:
            raise IdempotencyKeyReusedError(key.key)
        body = orjson.loads(body_json)
        kind = Kind(body["kind"]) if body.get("kind") in set(Kind) else None
        return ApiResponse(200, body, "replayed", kind, replayed=True)

    @staticmethod
    def _remember(
        connection: sqlite3.Connection, key: IdempotencyKey, response: ApiResponse, now: datetime
    ) -> None:
        connection.execute(
            _INSERT_RESPONSE,
            (
                key.key,
                key.request_hash,
                response.status,
                orjson.dumps(dict(response.body)).decode(),
                timestamp(now),
            ),
        )

    def _put(
        self,
        connection: sqlite3.Connection,
        publication_id: str,
        content: PublicationContent,
        key: IdempotencyKey,
        now: datetime,
    ) -> ApiResponse:
        with _transaction(connection):
            replay = self._replay(connection, key)
            if replay is not None:
                return replay
            stored = self._select(connection, publication_id)
            action = decide_put(stored, content.revision)
            if stored is not None and action is PutAction.STALE:
                after = stored
            else:
                # A replacement keeps the time the record went public; a creation or a
                # republication after withdrawal starts it now.
                published_at = (
                    stored.published_at
                    if stored is not None and action is PutAction.REPLACED
                    else now
                )
                statement = (
                    _INSERT_PUBLICATION if action is PutAction.CREATED else _UPDATE_PUBLICATION
                )
                connection.execute(
                    statement, _content_parameters(publication_id, content, published_at, now)
                )
                after = StoredPublication(publication_id, content, published_at, now, None, None)
            response = put_response(action, publication_id, after, content.revision)
            self._remember(connection, key, response, now)
            return response

    async def put_publication(
        self,
        publication_id: str,
        content: PublicationContent,
        key: IdempotencyKey,
        now: datetime,
    ) -> ApiResponse:
        return await self._write(
            lambda connection: self._put(connection, publication_id, content, key, now)
        )

    def _withdraw(
        self,
        connection: sqlite3.Connection,
        publication_id: str,
        withdrawal: Withdrawal,
        key: IdempotencyKey,
        now: datetime,
    ) -> ApiResponse:
        with _transaction(connection):
            replay = self._replay(connection, key)
            if replay is not None:
                return replay
            stored = self._select(connection, publication_id)
            action = decide_withdrawal(stored, withdrawal.revision)
            if stored is None:
                # Nothing to remember: a later PUT may create the record, and the key must not
                # then replay "not found".
                return withdrawal_response(action, publication_id, None, withdrawal.revision)
            after = stored
            if action is WithdrawalAction.WITHDRAWN:
                withdrawn_at = stored.withdrawn_at or now
                connection.execute(
                    _WITHDRAW_PUBLICATION,
                    {
                        "id": publication_id,
                        "revision": withdrawal.revision,
                        "withdrawn_at": timestamp(withdrawn_at),
                        "reason": withdrawal.reason.value,
                        "updated_at": timestamp(now),
                    },
                )
                after = StoredPublication(
                    publication_id,
                    _with_revision(stored.content, withdrawal.revision),
                    stored.published_at,
                    now,
                    withdrawn_at,
                    withdrawal.reason,
                )
            response = withdrawal_response(action, publication_id, after, withdrawal.revision)
            self._remember(connection, key, response, now)
            return response

    async def withdraw_publication(
        self,
        publication_id: str,
        withdrawal: Withdrawal,
        key: IdempotencyKey,
        now: datetime,
    ) -> ApiResponse:
        return await self._write(
            lambda connection: self._withdraw(connection, publication_id, withdrawal, key, now)
        )

    async def purge_idempotency_keys(self, older_than: datetime) -> int:
        def purge(connection: sqlite3.Connection) -> int:
            return connection.execute(_PURGE_KEYS, (timestamp(older_than),)).rowcount

        return await self._write(purge)

    # --- reads ----------------------------------------------------------------------------------

    async def get_publication(self, publication_id: str) -> StoredPublication | None:
        return await self._read(lambda connection: self._select(connection, publication_id))

    @staticmethod
    def _page(
        connection: sqlite3.Connection,
        count_sql: str,
        page_sql: str,
        parameters: dict[str, object],
    ) -> tuple[int, list[StoredPublication]]:
        with _transaction(connection, write=False):  # one snapshot for the count and the rows
            (total,) = connection.execute(count_sql, parameters).fetchone()
            rows = connection.execute(page_sql, parameters).fetchall()
        return total, [_publication_from_row(row) for row in rows]

    async def list_public(
        self, kind: Kind, today: date, limit: int, offset: int
    ) -> tuple[int, list[StoredPublication]]:
        parameters: dict[str, object] = {
            "kind": kind.value,
            "today": today.isoformat(),
            "limit": limit,
            "offset": offset,
        }
        return await self._read(
            lambda connection: self._page(
                connection, _COUNT_PUBLIC_OF_KIND, _PAGE_PUBLIC_OF_KIND, parameters
            )
        )

    async def search_public(
        self, text: str, today: date, limit: int, offset: int
    ) -> tuple[int, list[StoredPublication]]:
        parameters: dict[str, object] = {
            "pattern": contains_pattern(text),
            "today": today.isoformat(),
            "limit": limit,
            "offset": offset,
        }
        return await self._read(
            lambda connection: self._page(connection, _COUNT_SEARCH, _PAGE_SEARCH, parameters)
        )

    async def count_public(self, today: date) -> Mapping[Kind, int]:
        def count(connection: sqlite3.Connection) -> dict[Kind, int]:
            rows = connection.execute(_COUNT_PUBLIC_BY_KIND, {"today": today.isoformat()})
            counts = dict.fromkeys(Kind, 0)
            counts.update({Kind(kind): number for kind, number in rows})
            return counts

        return await self._read(count)


def _with_revision(content: PublicationContent, revision: int) -> PublicationContent:
    return PublicationContent(
        kind=content.kind,
        subject_name=content.subject_name,
        subject_code=content.subject_code,
        plate=content.plate,
        fields=content.fields,
        decision_date=content.decision_date,
        publication_end=content.publication_end,
        revision=revision,
    )


POSTGRESQL_DRIVER: Final = "psycopg[binary]>=3.2"
"""What to install before a PostgreSQL repository can be written and used."""


def open_repository(settings: Settings) -> PublicationRepository:
    """The repository the settings ask for: SQLite at ``website_db`` unless
    ``website_database_url`` is set.

    :raises NotImplementedError: for PostgreSQL, which this build does not implement; the message
        names the driver to install. The URL is not repeated (it holds a password).
    """
    if settings.website_database_url:
        if importlib.util.find_spec("psycopg") is None:
            raise NotImplementedError(
                "CREDIT_WEBSITE_DATABASE_URL is set, but the website has no PostgreSQL support in "
                f"this build: install the driver (pip install '{POSTGRESQL_DRIVER}') and "
                "implement PublicationRepository for PostgreSQL in website/repository.py, or "
                "unset CREDIT_WEBSITE_DATABASE_URL to use SQLite at CREDIT_WEBSITE_DB"
            )
        raise NotImplementedError(
            "CREDIT_WEBSITE_DATABASE_URL is set and psycopg is installed, but the PostgreSQL "
            "PublicationRepository is not written yet (website/repository.py); unset "
            "CREDIT_WEBSITE_DATABASE_URL to use SQLite at CREDIT_WEBSITE_DB"
        )
    return SqliteRepository(settings.website_db)
