"""Engines, sessions and migrations for the shared database.

The schema is created and upgraded by the Alembic migrations in ``migrations/`` only::

    upgrade_database("sqlite:////tmp/har.sqlite3")      # or: alembic upgrade head

Engines are cached per URL per process (a forked worker child builds its own), and
:func:`session_scope` is the one way to run a unit of work: commit on success, rollback on error.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from har.config import ROOT, Settings, load_settings
from har.db import make_engine, make_session_factory

ALEMBIC_INI = ROOT / "alembic.ini"
MIGRATIONS_DIR = ROOT / "migrations"

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker] = {}
_pid = os.getpid()


def database_url(settings: Settings | str | None = None) -> str:
    """The database URL of ``settings`` (a :class:`Settings`, a URL string, or None = the environment)."""
    if isinstance(settings, str):
        return settings
    return (settings or load_settings()).resolved_database_url


def _ensure_sqlite_dir(url: str) -> None:
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:" \
            and not u.database.startswith("file:"):
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _check_pid() -> None:
    """After a fork, drop the parent's pooled connections (never share sockets across processes)."""
    global _pid
    if os.getpid() != _pid:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()
        _factories.clear()
        _pid = os.getpid()


def get_engine(settings: Settings | str | None = None) -> Engine:
    """The process-wide engine for the settings' database URL (created once per URL)."""
    url = database_url(settings)
    with _lock:
        _check_pid()
        engine = _engines.get(url)
        if engine is None:
            _ensure_sqlite_dir(url)
            engine = _engines[url] = make_engine(url)
        return engine


def get_session_factory(settings: Settings | str | None = None) -> sessionmaker:
    url = database_url(settings)
    engine = get_engine(url)
    with _lock:
        factory = _factories.get(url)
        if factory is None:
            factory = _factories[url] = make_session_factory(engine)
        return factory


@contextmanager
def session_scope(settings: Settings | str | None = None) -> Iterator[Session]:
    """A session that commits when the block ends normally and rolls back on an exception."""
    session = get_session_factory(settings)()
    if isinstance(settings, Settings):  # webhooks queued by this unit of work are sent after its commit
        session.info["har_settings"] = settings
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Close every cached engine (tests, shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()


def alembic_config(url: str | None = None):
    """An Alembic ``Config`` for this repository, bound to ``url`` (default: the environment's)."""
    from alembic.config import Config

    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = url or database_url(None)
    return cfg


def upgrade_database(url: str | Settings | None = None, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` (default: the newest)."""
    from alembic import command

    url = database_url(url)
    _ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


def downgrade_database(url: str | Settings | None = None, revision: str = "base") -> None:
    from alembic import command

    url = database_url(url)
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str | Settings | None = None) -> str | None:
    """The revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    engine = get_engine(database_url(url))
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
