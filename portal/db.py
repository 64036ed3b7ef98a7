"""Database plumbing: declarative base, UTC-aware timestamps, one session per request or CLI command."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Stable constraint names so that Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


# Trigram indexes (pg_trgm) answer `LIKE '%…%'` searches from an index on PostgreSQL; SQLite has no such index and
# keeps scanning, which is fine for a local database. The extension is created before the tables that use it.
event.listen(
    Base.metadata,
    "before_create",
    sa.DDL("CREATE EXTENSION IF NOT EXISTS pg_trgm").execute_if(dialect="postgresql"),
)


def trigram_index(name: str, column: str) -> sa.Index:
    """A GIN trigram index on a text column, created on PostgreSQL only."""
    return sa.Index(name, column, postgresql_using="gin", postgresql_ops={column: "gin_trgm_ops"}).ddl_if(
        dialect="postgresql"
    )


def include_in_autogenerate(dialect: str) -> Callable[..., bool]:
    """Alembic's include_object for a database of this dialect: skips what the models create only elsewhere.

    A trigram index exists only on PostgreSQL (ddl_if), so a SQLite database without it still agrees with the models.
    """

    def include(obj: Any, _name: Any, type_: str, reflected: bool, _compare_to: Any) -> bool:
        condition = getattr(obj, "_ddl_if", None) if type_ == "index" and not reflected else None
        return condition is None or condition.dialect in (None, dialect)

    return include


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Stores aware datetimes as UTC; SQLite drops the zone, so it is put back on the way out."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = sa.create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


class Database:
    """Holds the engine and session factory of one app; stored in app.extensions['portal.db']."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False, future=True)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for work outside a request (threads, background jobs): commits or rolls back."""
        s = self.sessionmaker()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()


def init_app(app: Flask) -> Database:
    database = Database(app.config["DATABASE_URL"])
    app.extensions["portal.db"] = database

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        s = g.pop("db_session", None)
        if s is not None:
            s.close()

    return database


def get_database() -> Database:
    return current_app.extensions["portal.db"]


def get_db() -> Session:
    """The session of the current request or CLI command (app context)."""
    if "db_session" not in g:
        g.db_session = get_database().sessionmaker()
        # A page reads the same things from several places (the header, the over-limit partial, the page itself):
        # within a GET request each such read is asked once. Writes keep reading the database every time.
        if has_request_context() and request.method in ("GET", "HEAD"):
            g.db_session.info[_MEMO] = {}
    return g.db_session


# --- reads asked once per request -----------------------------------------------------------------------------

_MEMO = "portal.memo"
T = TypeVar("T")


def memo(db: Session, key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()` once per GET request's session for this key; anywhere else (tests' sessions, POSTs, tasks, CLI)
    simply `compute()`. Unflushed changes bypass the memo, and any flush, commit, rollback, locking read or
    non-SELECT statement forgets it, so a value is never older than the last thing the session did."""
    cache = db.info.get(_MEMO)
    if cache is None or db.new or db.deleted or db.dirty:
        return compute()
    if key in cache:
        return cache[key]  # type: ignore[no-any-return]
    value = compute()
    cache[key] = value
    return value


def memo_has(db: Session, key: Hashable) -> bool:
    """Whether this request already asked for key (and nothing has changed since): a reader may derive from it."""
    cache = db.info.get(_MEMO)
    return cache is not None and key in cache and not (db.new or db.deleted or db.dirty)


def memo_get(db: Session, key: Hashable, default: Any = None) -> Any:
    return db.info[_MEMO][key] if memo_has(db, key) else default


def memo_put(db: Session, key: Hashable, value: Any) -> None:
    """Remember a value another read found on the way (e.g. the seat count inside the usage query)."""
    cache = db.info.get(_MEMO)
    if cache is not None and not (db.new or db.deleted or db.dirty):
        cache[key] = value


def _forget(session: Session, *_args: Any) -> None:
    cache = session.info.get(_MEMO)
    if cache:
        cache.clear()


event.listen(Session, "after_flush", _forget)
event.listen(Session, "after_commit", _forget)
event.listen(Session, "after_rollback", _forget)
event.listen(Session, "after_soft_rollback", _forget)


@event.listens_for(Session, "do_orm_execute")
def _forget_on_write(state: Any) -> None:
    if not state.is_select or getattr(state.statement, "_for_update_arg", None) is not None:
        _forget(state.session)
