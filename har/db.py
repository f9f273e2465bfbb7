"""Database schema (SQLAlchemy 2) shared by the web app and the workers.

The schema is created and upgraded by the Alembic migrations in ``migrations/``; never by
``create_all``. Timestamps are UTC.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

# Job states, in the order a job moves through them.
QUEUED = "queued"
EXTRACTING = "extracting"
CLASSIFYING = "classifying"
REPORTING = "reporting"
DONE = "done"
FAILED = "failed"
STATES = (QUEUED, EXTRACTING, CLASSIFYING, REPORTING, DONE, FAILED)
TERMINAL_STATES = (DONE, FAILED)

# The annotated video of a done job (``jobs.video_status``; null when none was asked for): rendered by its own
# task after the job is done, so the results and reports never wait for it. A failed render leaves the job done.
VIDEO_RENDERING = "rendering"
VIDEO_READY = "ready"
VIDEO_FAILED = "failed"
VIDEO_STATES = (VIDEO_RENDERING, VIDEO_READY, VIDEO_FAILED)
# The workers' view of a job: its status, except RENDERING for a done job whose annotated video is still being
# rendered (the last stage of the workers, after the one that made the job done: har.jobs.worker_state).
RENDERING = VIDEO_RENDERING


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Video(Base):
    __tablename__ = "videos"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    path: Mapped[str] = mapped_column(String(1024))  # relative to the storage directory
    original_filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    container: Mapped[str] = mapped_column(String(16))  # file extension: mp4, mov, ...
    codec: Mapped[str | None] = mapped_column(String(16))
    duration_s: Mapped[float] = mapped_column(Float)
    fps: Mapped[float] = mapped_column(Float)
    frame_count: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    rotation_deg: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    stage: Mapped[str | None] = mapped_column(String(64))  # human-readable detail of the current stage
    error: Mapped[str | None] = mapped_column(Text)  # reason shown to the user when failed
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    frames_total: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # imgsz, sample_fps, stride, ...
    pose_model: Mapped[str | None] = mapped_column(String(128))  # "name version"
    action_model: Mapped[str | None] = mapped_column(String(128))
    overall_label: Mapped[str | None] = mapped_column(String(32))  # summary for the jobs list
    overall_confidence: Mapped[float | None] = mapped_column(Float)
    persons: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the result document (docs/contracts.md)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # seconds per stage
    # Worker bookkeeping: how many times the current stage's task has started (reset when the job
    # moves to the next stage), the Celery task id running it, and the last sign of life from it.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    task_id: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(128))  # "host:pid" of the process running the stage
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the message of the stage the job waits for was handed to the broker (None: not yet, or lost
    # on the way: the sweep sends it again after a short grace), and when the current attempt of the
    # running stage started (the ETA counts from it, not from the first attempt).
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stage_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The annotated video: rendering | ready | failed (VIDEO_STATES), null when none was asked for; why it failed.
    video_status: Mapped[str | None] = mapped_column(String(16))
    video_error: Mapped[str | None] = mapped_column(Text)
    # Who submitted it (web/auth.py): "token:<api token name>" or "anon:<browser identity>"; null for jobs from
    # before owners were recorded (listed to nobody; only an admin token may delete or re-run them).
    owner: Mapped[str | None] = mapped_column(String(80))
    # Webhooks (har/webhooks.py): where the job's events are POSTed (null: nowhere); the job's own key, for a job
    # submitted without an API token (it signs the job's webhooks and is a bearer credential for this job only);
    # the service's base URL seen at submission (the links in the webhooks' bodies)
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    job_key: Mapped[str | None] = mapped_column(String(64))
    public_url: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    video: Mapped[Video] = relationship(lazy="joined")
    events: Mapped[list["JobEvent"]] = relationship(
        back_populates="job", order_by="JobEvent.id", cascade="all, delete-orphan"
    )
    tracks: Mapped[list["Track"]] = relationship(
        back_populates="job", order_by="Track.track_id", cascade="all, delete-orphan"
    )
    predictions: Mapped[list["Prediction"]] = relationship(
        back_populates="job", order_by="Prediction.track_id", cascade="all, delete-orphan"
    )
    segments: Mapped[list["Segment"]] = relationship(
        back_populates="job", order_by=lambda: [Segment.track_id, Segment.start_s], cascade="all, delete-orphan"
    )
    reports: Mapped[list["Report"]] = relationship(back_populates="job", cascade="all, delete-orphan")
    webhook_deliveries: Mapped[list["WebhookDelivery"]] = relationship(
        back_populates="job", order_by="WebhookDelivery.id", cascade="all, delete-orphan", passive_deletes=True)

    @property
    def progress(self) -> float:
        """Overall progress in [0, 1] across stages."""
        if self.status == DONE:
            return 1.0
        pose = self.frames_done / self.frames_total if self.frames_total else 0.0
        if self.status in (QUEUED,):
            return 0.0
        if self.status == EXTRACTING:
            return 0.85 * min(1.0, pose)
        if self.status == CLASSIFYING:
            return 0.9
        if self.status == REPORTING:
            return 0.95
        return 0.85 * min(1.0, pose)


class JobEvent(Base):
    """One state change of a job: its state history."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="events")


class PoseData(Base):
    """The pose stage's full output for a job: ``models.tracks.PoseExtraction.to_bytes()``."""

    __tablename__ = "pose_data"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    sampled_fps: Mapped[float] = mapped_column(Float)
    frames_sampled: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Track(Base):
    """Summary of one person's keypoint track (arrays live in PoseData)."""

    __tablename__ = "tracks"
    __table_args__ = (UniqueConstraint("job_id", "track_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    track_id: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)
    mean_score: Mapped[float] = mapped_column(Float)

    job: Mapped[Job] = relationship(back_populates="tracks")


class Prediction(Base):
    """Overall action of one person."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("job_id", "track_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    track_id: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(32))  # a class name or "uncertain"
    confidence: Mapped[float] = mapped_column(Float)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)

    job: Mapped[Job] = relationship(back_populates="predictions")


class Segment(Base):
    """One stretch of a person's timeline with a single action."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    track_id: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(32))
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)

    job: Mapped[Job] = relationship(back_populates="segments")


class Report(Base):
    """A generated file for a job: json, csv, html report or the annotated video."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("job_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # json | csv | html | video
    path: Mapped[str] = mapped_column(String(1024))  # relative to the storage directory
    media_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="reports")


class ApiToken(Base):
    """An API token (web/auth.py): only the SHA-256 of the token is stored. Jobs submitted with it belong to
    ``token:<name>``; a name has at most one active (not revoked) token."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        Index("ux_api_tokens_active_name", "name", unique=True, sqlite_where=text("revoked_at IS NULL"),
              postgresql_where=text("revoked_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # webhooks (har/webhooks.py): the secret that signs the webhooks of this name's jobs, and the callback URL its
    # jobs get when they name none
    webhook_secret: Mapped[str | None] = mapped_column(String(64))
    callback_url: Mapped[str | None] = mapped_column(String(2048))


class WebhookDelivery(Base):
    """One event of a job sent to its callback URL (har/webhooks.py): the body as sent, the state (pending,
    delivered, failed), and every attempt (``attempt_log``: at, status_code, error, duration_ms, retry_in_s)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))  # job.done | job.failed | video.ready | video.failed
    url: Mapped[str] = mapped_column(String(2048))
    body: Mapped[str] = mapped_column(Text)  # the JSON document, byte for byte as signed and sent
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)  # the start of the receiver's last answer
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    redelivery_of: Mapped[int | None] = mapped_column(Integer)  # "send again" of this delivery
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    job: Mapped[Job] = relationship(back_populates="webhook_deliveries")


Index("ix_jobs_created_at_id", Job.created_at.desc(), Job.id)
Index("ix_jobs_owner_created_at", Job.owner, Job.created_at)
Index("ux_jobs_job_key", Job.job_key, unique=True)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL: web reads while workers write
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)
