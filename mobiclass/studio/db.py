"""The studio's records: projects, their classes and images, and jobs; SQLAlchemy models whose schema Alembic owns.

SQLite under the studio's home by default; any SQLAlchemy URL (PostgreSQL for a team sharing one studio) works the
same. Image bytes are not in the database: they live on disk under their sha256 (see store.py).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import (JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine,
                        event, false)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from ..errors import UsageError

FINISHED = ("done", "failed", "cancelled")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    target: Mapped[str] = mapped_column(String(40), default="laptop", server_default="laptop")  # its hardware
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)
    labels: Mapped[list[Label]] = relationship(back_populates="project", cascade="all, delete-orphan",
                                                 order_by="Label.name")
    jobs: Mapped[list[Job]] = relationship(back_populates="project", cascade="all, delete-orphan",
                                             order_by="Job.id")


class Label(Base):
    """A class of a project (``class`` is taken in Python)."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    project: Mapped[Project] = relationship(back_populates="labels")
    images: Mapped[list[ImageRecord]] = relationship(back_populates="label", cascade="all, delete-orphan",
                                                       order_by="ImageRecord.id")


class ImageRecord(Base):
    """One photo of a project: its bytes are the file named by `sha256`; a project holds each photo once. A photo
    without a class (`label_id` NULL) waits to be labelled: training leaves it out."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("project_id", "sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"), index=True,
                                                 nullable=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    suffix: Mapped[str] = mapped_column(String(8))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(255), default="")  # the uploaded file's name, shown, never opened
    reviewed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # kept after the doctor
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)
    label: Mapped[Label | None] = relationship(back_populates="images")


class Job(Base):
    """A training or export task; `state` moves queued -> running -> done | failed | cancelled."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # train | export | doctor | select
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    progress: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    run_dir: Mapped[str | None] = mapped_column(String(500), nullable=True)  # relative to the studio's home
    artifact: Mapped[str | None] = mapped_column(String(500), nullable=True)  # the download, relative to the home
    source_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # an export's training job
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A running job is claimed by one worker (`lease_owner`), which renews the claim while it runs: a job runs at
    # most once at a time, and a claim nobody renews any more marks a job whose worker died.
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    project: Mapped[Project] = relationship(back_populates="jobs")


def database_url(home: Path, url: str | None = None) -> str:
    return url or f"sqlite:///{(home / 'studio.db').resolve()}"


def open_database(url: str) -> sessionmaker:
    """Bring the schema up to date (Alembic) and return a session factory."""
    from alembic import command
    from alembic.config import Config

    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    try:
        engine = create_engine(url, future=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise UsageError(f"cannot use the database {url!r}: {exc} (give a SQLAlchemy URL such as "
                         f"sqlite:///studio.db or postgresql://user@host/db)", code="bad_database") from None
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _):  # WAL: the server and the worker read and write concurrently
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as exc:
        raise UsageError(f"cannot open the database {url!r}: {exc.orig}", code="bad_database") from None
    return sessionmaker(engine, expire_on_commit=False)
