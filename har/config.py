"""Configuration from environment variables, with embedded defaults that run on one machine.

Every setting is read from ``HAR_<NAME>`` (e.g. ``HAR_DATABASE_URL``); the web app and the workers
build their settings from the same function so they always agree.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT / "var"


def _env(name: str, default):
    raw = os.environ.get(f"HAR_{name}")
    if raw is None or raw == "":
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


@dataclass(frozen=True)
class Settings:
    data_dir: str = str(DEFAULT_DATA_DIR)
    database_url: str = ""  # default: sqlite file in data_dir
    redis_url: str = "redis://127.0.0.1:6379/0"
    storage_dir: str = ""  # default: data_dir/storage (with S3 storage: the local spool, see har/storage.py)
    # where uploads and generated files are stored: "" = local files in storage_dir; s3://bucket/prefix = an
    # S3-compatible bucket (endpoint: s3_endpoint_url, else AWS_ENDPOINT_URL; credentials and region from the
    # standard AWS variables)
    storage_url: str = ""
    s3_endpoint_url: str = ""
    secret_key: str = ""  # default: generated once and kept in data_dir
    max_upload_mb: int = 500
    max_video_seconds: float = 600.0
    # larger frames or higher rates are refused at upload (422) with how to convert them: an 8K frame alone is
    # ~100 MB decoded, and every frame of a 240 fps video is decoded to sample 11 of them a second
    max_video_width: int = 3840   # the longer side, in pixels (4K UHD)
    max_video_height: int = 2160  # the shorter side
    max_video_fps: float = 120.0
    allowed_extensions: str = "mp4,mov,avi,mkv,webm"
    # models
    pose_backend: str = "onnx"
    pose_imgsz: int = 480  # measured: 2.4-2.7x faster than 640, 95 % of joints within 5 % of body height
    pose_threads: int = 1  # onnxruntime threads per pose worker process (0 = one per core)
    pose_batch: int = 8
    sample_fps: float = 0.0  # 0 = models.pose.default_sample_fps of the action model's training rate
    pose_mode: str = "guided"  # guided: whole frames every pose_redetect_s, person crops between; full
    pose_crop_imgsz: int = 224  # longest side of a person crop's network input (guided)
    pose_redetect_s: float = 1.0  # the whole frame at least this often (guided)
    pose_crop_margin: float = 0.25  # around a tracked person's predicted box, share of its longer side (guided)
    window_stride: int = 8
    annotate_video: bool = True
    # queues
    pose_queue: str = "pose"
    classify_queue: str = "classify"
    report_queue: str = "classify"
    video_queue: str = "video"  # the annotated video: its own worker, so a render never holds up the next job
    webhook_queue: str = "webhook"  # webhook deliveries (har/webhooks.py): their own worker, never behind a stage
    task_always_eager: bool = False
    # recovery: a stage is started at most max_attempts times; a running stage beats every heartbeat_s
    # and counts as dead after stale_after_s of silence; a job waiting in a queue longer than
    # requeue_after_s is enqueued again; a job whose message never reached the broker (the web app or
    # a worker stopped between committing the job and publishing its task, or the publish failed) is
    # enqueued again after unsent_after_s; every worker sweeps for such jobs every sweep_interval_s
    max_attempts: int = 3
    heartbeat_s: float = 10.0
    stale_after_s: float = 120.0
    requeue_after_s: float = 1800.0
    unsent_after_s: float = 60.0
    sweep_interval_s: float = 60.0
    # a worker told to stop (SIGTERM, with REMAP_SIGTERM=SIGQUIT as the launchers set it) gives a running task
    # this long to finish, then stops it and hands its message back to the queue at once, for another worker
    worker_shutdown_grace_s: float = 2.0
    # S3: multipart uploads left unfinished this long (their process died) are aborted by the sweep; longer than
    # any stage can run (worker/celery_app.py's task time limit) and any upload can take
    multipart_abort_after_s: float = 6 * 3600.0
    # retention (worker/retention.py): done or failed jobs unchanged for retention_days are removed, rows and
    # files, by the workers' sweep, at most retention_batch a pass (0 days = keep everything)
    retention_days: float = 0.0
    retention_batch: int = 100
    # low disk: an upload is refused (507) when storing it would leave less than min_free_mb free on the
    # storage volume (0 = refuse only what does not fit)
    min_free_mb: int = 1024
    jobs_per_page: int = 20
    # GET /metrics (web/metrics.py): when set, a scrape must send "Authorization: Bearer <metrics_token>"
    metrics_token: str = ""
    # access (web/auth.py): "optional" = anyone may submit jobs (a browser is known by a signed cookie, an API
    # client by its token); "required" = submitting a job (upload, re-run) needs an API token
    auth: str = "optional"
    # new jobs (uploads and re-runs) per client per window (web/ratelimit.py): "20/hour", "5/10min", "0"/"off"
    upload_rate: str = "60/hour"
    # reverse proxies in front of the web app whose X-Forwarded-For / -Proto are trusted (client IP, https)
    trusted_proxies: int = 0
    # the reverse proxy in front of the web app (har/proxy.py: nginx; scripts/run_local.py starts it, docker-compose.yml
    # runs it as the proxy service): "nginx", or "none" (run_local.py only: gunicorn on the public port, unprotected
    # from slow clients). The request line and headers must arrive within proxy_header_timeout_s; a request body that
    # stops arriving for proxy_body_timeout_s is cut off; at most proxy_conn_per_ip requests in progress per address
    proxy: str = "nginx"
    proxy_header_timeout_s: float = 10.0
    proxy_body_timeout_s: float = 30.0
    proxy_conn_per_ip: int = 32
    # webhooks (har/webhooks.py): callback URLs on loopback, private and link-local addresses are refused unless
    # webhook_allow_private; each attempt connects within webhook_connect_timeout_s and waits webhook_read_timeout_s
    # for the answer; failed attempts (timeouts, connection errors, 5xx, 408/425/429) are retried after
    # webhook_retry_base_s, doubled each time up to webhook_retry_max_s, until webhook_give_up_s after the first
    webhook_allow_private: bool = False
    webhook_connect_timeout_s: float = 5.0
    webhook_read_timeout_s: float = 10.0
    webhook_retry_base_s: float = 30.0
    webhook_retry_max_s: float = 3 * 3600.0
    webhook_give_up_s: float = 24 * 3600.0
    # the service's base URL in webhooks' links (e.g. https://har.example.com); empty: the URL a job was submitted to
    public_url: str = ""
    # scripts/run_local.py: a part that stops (Redis, a worker, the web server) is started again after
    # restart_delay_s, doubled after each quick exit up to restart_delay_max_s; a part that ran restart_stable_s
    # is well again (the pause and the count start over); restart_give_up quick exits in a row stop the service
    restart_delay_s: float = 1.0
    restart_delay_max_s: float = 30.0
    restart_stable_s: float = 60.0
    restart_give_up: int = 5

    @property
    def allowed_extension_set(self) -> frozenset[str]:
        return frozenset(e.strip().lower().lstrip(".") for e in self.allowed_extensions.split(",") if e.strip())

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'har.sqlite3'}"

    @property
    def resolved_storage_dir(self) -> Path:
        return Path(self.storage_dir or Path(self.data_dir) / "storage")

    @property
    def resolved_secret_key(self) -> str:
        if self.secret_key:
            return self.secret_key
        path = Path(self.data_dir) / "secret_key"
        if not path.exists():
            # Several processes (gunicorn workers) may start at once: the first to create the file
            # wins and the others read its key. Written to a temporary file and linked into place, so
            # nobody ever reads a half-written key or replaces one already handed out.
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".secret_key.{os.getpid()}.{os.urandom(4).hex()}")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(os.urandom(32).hex())
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    pass
            finally:
                tmp.unlink(missing_ok=True)
        return path.read_text().strip()


def load_settings(**overrides) -> Settings:
    """Settings from the environment; keyword arguments win over the environment."""
    values = {}
    for f in fields(Settings):
        values[f.name] = overrides[f.name] if f.name in overrides else _env(f.name.upper(), f.default)
    return Settings(**values)
