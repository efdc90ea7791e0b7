"""The service's configuration: one frozen dataclass built from the environment and CLI flags."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bertd.server.origins import normalize_host_pattern, normalize_origin


class ConfigError(ValueError):
    """An environment variable or flag holds a value bertd cannot use."""


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = 8000
    data_dir: Path = Path("./data")
    base_models_dir: Path | None = None
    max_concurrent_tasks: int = 1
    log_level: str = "INFO"
    log_file: Path | None = None
    api_token: str | None = field(default=None, repr=False)
    callback_secret: str | None = field(default=None, repr=False)
    max_upload_mb: int = 200
    # Tasks allowed to wait in the queue; more get 429.
    max_queued_tasks: int = 100
    # Refuse callbacks to loopback, private and link-local addresses (SSRF guard).
    callback_block_private: bool = False
    # Seconds a stopping worker gets to exit on its own before it is terminated, then killed.
    stop_grace_seconds: float = 30.0
    # After the grace period a worker gets SIGTERM, then this long before SIGKILL.
    kill_wait_seconds: float = 5.0
    # Minimum seconds between two progress writes of one task to SQLite.
    progress_write_interval: float = 1.0
    # Seconds between two progress reports of a worker (epoch ends are always reported).
    progress_report_interval: float = 0.25
    # WebSocket: messages a subscriber may have pending before it is closed as too slow,
    # seconds one send may block, and seconds between pings.
    ws_queue_limit: int = 256
    ws_send_timeout_seconds: float = 10.0
    ws_heartbeat_seconds: float = 30.0
    callback_timeout_seconds: float = 10.0
    callback_max_attempts: int = 5
    callback_backoff_seconds: float = 1.0
    # Keep one worker process started, its imports done, so a task starts without waiting for them.
    keep_spare_worker: bool = True
    # CPUs training workers may run on (e.g. keep one core for the API); None: all of them.
    worker_cpus: tuple[int, ...] | None = None
    # GPUs the pool may use (indices as torch sees them); None: every visible GPU.
    gpu_devices: tuple[int, ...] | None = None
    # Trained models kept loaded for predictions.
    predict_cache_size: int = 2
    # A task whose base model is not on the server waits while it is pulled (false: 400 at create).
    auto_download_base_models: bool = True
    # The hub such a pull uses: huggingface (HF_ENDPOINT, HF_TOKEN) or modelscope (MODELSCOPE_ENDPOINT).
    base_model_source: str = "huggingface"
    # Tries in a row without progress before a pull gives up, and the first wait between them (doubling).
    base_model_download_retries: int = 5
    base_model_download_backoff_seconds: float = 1.0
    # After a restart (clean or a crash), tasks that were training continue from their last
    # checkpoint; false: they end `stopped` (clean shutdown) or `failed` (crash), as before.
    resume_interrupted_tasks: bool = True
    # How often restarts may interrupt one task before it fails instead of continuing again.
    max_resumes: int = 3
    # Keep a task's checkpoints once it has ended (they are removed by default).
    keep_checkpoints: bool = False
    # Host names (besides IP literals, localhost and this machine's names) that requests may carry
    # in their Host header, as Django's ALLOWED_HOSTS: "*" any, ".example.com" a domain and its
    # subdomains. Answers DNS rebinding; see the README's Security section.
    allowed_hosts: tuple[str, ...] = ()
    # Web origins (scheme://host[:port]) other than bertd's own whose pages may change state, open
    # WebSockets and read answers (CORS). Answers cross-site requests.
    allowed_origins: tuple[str, ...] = ()
    # Redis URL of the broker (redis://:password@host:6379/0): tasks then train on `bertd worker`
    # boxes through Celery instead of in this machine's pool. None: the local pool, no Redis needed.
    broker_url: str | None = field(default=None, repr=False)
    # The secret `bertd worker` boxes show (routes under /api/v1/internal/); required with BROKER_URL.
    worker_token: str | None = field(default=None, repr=False)
    # Dotted path of the function a worker runs; tests swap in a fast stand-in for scheduler cases.
    training_function: str = "bertd.training.loop:run_training"
    # The same for prediction jobs.
    prediction_function: str = "bertd.training.predict_sheet:run_prediction"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def checkpoints_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def predictions_dir(self) -> Path:
        return self.data_dir / "predictions"

    @property
    def effective_base_models_dir(self) -> Path:
        return self.base_models_dir if self.base_models_dir is not None else self.data_dir / "base_models"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "bertd.sqlite3"

    def masked(self) -> dict[str, object]:
        """The configuration as logged at start-up, secrets replaced by '***'."""
        shown: dict[str, object] = {}
        for config_field in dataclasses.fields(self):
            value = getattr(self, config_field.name)
            if config_field.name in ("api_token", "callback_secret", "worker_token"):
                value = "***" if value else None
            elif config_field.name == "broker_url" and value:
                value = _without_password(value)
            shown[config_field.name] = str(value) if isinstance(value, Path) else value
        shown["base_models_dir"] = str(self.effective_base_models_dir)
        return shown


# Environment variable -> (field name, parser). Names follow ../shared/API.md.
def _parse_int(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def parse_positive_int(name: str, raw: str) -> int:
    return _parse_int(name, raw, 1)


def _parse_non_negative_int(name: str, raw: str) -> int:
    return _parse_int(name, raw, 0)


def _parse_port(name: str, raw: str) -> int:
    value = parse_positive_int(name, raw)
    if value > 65535:
        raise ConfigError(f"{name} must be a TCP port (1-65535), got {value}")
    return value


def _parse_source(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("huggingface", "modelscope"):
        raise ConfigError(f"{name} must be huggingface or modelscope, got {raw!r}")
    return value


def _parse_non_negative_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def parse_log_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"{name} must be one of DEBUG, INFO, WARNING, ERROR, got {raw!r}")
    return level


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def parse_gpu_list(name: str, raw: str) -> tuple[int, ...]:
    try:
        indices = tuple(int(part) for part in raw.replace(" ", "").split(",") if part)
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated GPU indices like 0,1; got {raw!r}") from None
    if not indices or min(indices) < 0:
        raise ConfigError(f"{name} must list at least one GPU index (0 or more); got {raw!r}")
    return indices


def _parse_cpu_list(name: str, raw: str) -> tuple[int, ...]:
    """'0', '0,2' or '0-3' (as taskset and cpusets write them)."""
    cpus: list[int] = []
    try:
        for part in raw.replace(" ", "").split(","):
            first, _, last = part.partition("-")
            cpus.extend(range(int(first), int(last or first) + 1))
    except ValueError:
        raise ConfigError(f"{name} must list CPUs like 0,1 or 0-3; got {raw!r}") from None
    if not cpus or min(cpus) < 0:
        raise ConfigError(f"{name} must list at least one CPU (0 or more); got {raw!r}")
    return tuple(sorted(set(cpus)))


def _parse_allowed_hosts(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated host names: 'api,localhost', '.example.com' (and subdomains), '*' (any)."""
    hosts = []
    for entry in (part for part in raw.split(",") if part.strip()):
        try:
            hosts.append(normalize_host_pattern(entry))
        except ValueError as error:
            raise ConfigError(f"{name}: {error}; e.g. {name}=bertd.example.com,.internal.example") from None
    return tuple(dict.fromkeys(hosts))


def _parse_allowed_origins(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated origins, each scheme://host[:port] exactly as browsers send it."""
    origins = []
    for entry in (part.strip() for part in raw.split(",") if part.strip()):
        if entry == "*":
            raise ConfigError(f"{name} lists origins one by one, like https://tools.example.com; '*' would let "
                              "every web page a user opens drive bertd")
        origin = normalize_origin(entry)
        if origin is None:
            raise ConfigError(f"{name}: {entry!r} is not a web origin; write scheme://host[:port] with no path, "
                              f"e.g. {name}=https://tools.example.com,http://127.0.0.1:3000")
        origins.append(origin)
    return tuple(dict.fromkeys(origins))


def _keep(_name: str, raw: str) -> str:
    return raw


def _path(_name: str, raw: str) -> Path:
    return Path(raw).expanduser()


def _optional_secret(_name: str, raw: str) -> str | None:
    return raw or None


def _parse_broker_url(name: str, raw: str) -> str:
    if urlsplit(raw).scheme not in ("redis", "rediss", "redis+socket"):
        raise ConfigError(f"{name} must be a Redis URL like redis://:password@host:6379/0; got {_without_password(raw)!r}")
    return raw


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


ENVIRONMENT_VARIABLES: dict[str, tuple[str, object]] = {
    "API_HOST": ("host", _keep),
    "API_PORT": ("port", _parse_port),
    "DATA_DIR": ("data_dir", _path),
    "BASE_MODELS_DIR": ("base_models_dir", _path),
    "MAX_CONCURRENT_TASKS": ("max_concurrent_tasks", parse_positive_int),
    "LOG_LEVEL": ("log_level", parse_log_level),
    "LOG_FILE": ("log_file", _path),
    "API_TOKEN": ("api_token", _optional_secret),
    "CALLBACK_SECRET": ("callback_secret", _optional_secret),
    "MAX_UPLOAD_MB": ("max_upload_mb", parse_positive_int),
    "MAX_QUEUED_TASKS": ("max_queued_tasks", parse_positive_int),
    "CALLBACK_BLOCK_PRIVATE": ("callback_block_private", _parse_bool),
    "KEEP_SPARE_WORKER": ("keep_spare_worker", _parse_bool),
    "PREDICT_CACHE_SIZE": ("predict_cache_size", parse_positive_int),
    "GPU_DEVICES": ("gpu_devices", parse_gpu_list),
    "WORKER_CPUS": ("worker_cpus", _parse_cpu_list),
    "STOP_GRACE_SECONDS": ("stop_grace_seconds", _parse_non_negative_float),
    "PROGRESS_WRITE_INTERVAL": ("progress_write_interval", _parse_non_negative_float),
    "PROGRESS_REPORT_INTERVAL": ("progress_report_interval", _parse_non_negative_float),
    "WS_QUEUE_LIMIT": ("ws_queue_limit", parse_positive_int),
    "WS_SEND_TIMEOUT_SECONDS": ("ws_send_timeout_seconds", _parse_non_negative_float),
    "WS_HEARTBEAT_SECONDS": ("ws_heartbeat_seconds", _parse_non_negative_float),
    "CALLBACK_TIMEOUT_SECONDS": ("callback_timeout_seconds", _parse_non_negative_float),
    "CALLBACK_MAX_ATTEMPTS": ("callback_max_attempts", parse_positive_int),
    "CALLBACK_BACKOFF_SECONDS": ("callback_backoff_seconds", _parse_non_negative_float),
    "AUTO_DOWNLOAD_BASE_MODELS": ("auto_download_base_models", _parse_bool),
    "BASE_MODEL_SOURCE": ("base_model_source", _parse_source),
    "BASE_MODEL_DOWNLOAD_RETRIES": ("base_model_download_retries", _parse_non_negative_int),
    "BASE_MODEL_DOWNLOAD_BACKOFF_SECONDS": ("base_model_download_backoff_seconds", _parse_non_negative_float),
    "RESUME_INTERRUPTED_TASKS": ("resume_interrupted_tasks", _parse_bool),
    "MAX_RESUMES": ("max_resumes", _parse_non_negative_int),
    "KEEP_CHECKPOINTS": ("keep_checkpoints", _parse_bool),
    "ALLOWED_HOSTS": ("allowed_hosts", _parse_allowed_hosts),
    "BROKER_URL": ("broker_url", _parse_broker_url),
    "WORKER_TOKEN": ("worker_token", _optional_secret),
    "ALLOWED_ORIGINS": ("allowed_origins", _parse_allowed_origins),
}


def load_config(environ: Mapping[str, str] | None = None, **overrides: object) -> Config:
    """Build the configuration from environment variables; keyword overrides (CLI flags) win."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for variable, (field_name, parse) in ENVIRONMENT_VARIABLES.items():
        raw = environ.get(variable)
        if raw is not None and raw != "":
            values[field_name] = parse(variable, raw)  # type: ignore[operator]
    values.update({name: value for name, value in overrides.items() if value is not None})
    # Absolute, so artifact paths handed to clients mean the same wherever they are read.
    for name in ("data_dir", "base_models_dir", "log_file"):
        if values.get(name) is not None:
            values[name] = Path(values[name]).expanduser().resolve()  # type: ignore[arg-type]
    values.setdefault("data_dir", Config.data_dir.resolve())
    if values.get("broker_url") and not values.get("worker_token"):
        raise ConfigError("BROKER_URL is set but WORKER_TOKEN is not: workers on other boxes must prove who they are; "
                          "set WORKER_TOKEN to a long random secret on the API node and on every worker")
    return Config(**values)  # type: ignore[arg-type]
