"""Configuration from the environment and flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertd.server.config import ConfigError, load_config


def test_defaults_follow_the_api_contract() -> None:
    config = load_config({})
    assert (config.host, config.port, config.max_concurrent_tasks) == ("0.0.0.0", 8000, 1)
    assert config.data_dir == Path("./data").resolve()  # absolute: artifact paths must not depend on cwd
    assert config.effective_base_models_dir == Path("./data/base_models").resolve()


def test_environment_and_flag_overrides() -> None:
    environ = {"API_PORT": "9000", "DATA_DIR": "/srv/bertd", "MAX_CONCURRENT_TASKS": "2", "LOG_LEVEL": "debug",
               "API_TOKEN": "t0ken", "BASE_MODELS_DIR": "/models", "MAX_UPLOAD_MB": "50"}
    config = load_config(environ, port=9100, host=None)
    assert config.port == 9100 and config.host == "0.0.0.0"
    assert config.data_dir == Path("/srv/bertd") and config.max_concurrent_tasks == 2
    assert config.log_level == "DEBUG" and config.max_upload_mb == 50
    assert config.effective_base_models_dir == Path("/models")
    masked = config.masked()
    assert masked["api_token"] == "***" and "t0ken" not in repr(config) and "t0ken" not in str(masked)


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("API_PORT", "eighty", "API_PORT must be an integer"),
    ("API_PORT", "70000", "API_PORT must be a TCP port"),
    ("MAX_CONCURRENT_TASKS", "0", "MAX_CONCURRENT_TASKS must be at least 1"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of"),
])
def test_bad_values_are_named(variable: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config({variable: value})


def test_cpu_and_gpu_lists() -> None:
    config = load_config({"WORKER_CPUS": "0-2,5", "GPU_DEVICES": "1, 0"})
    assert config.worker_cpus == (0, 1, 2, 5) and config.gpu_devices == (1, 0)
    with pytest.raises(ConfigError, match="WORKER_CPUS must list CPUs"):
        load_config({"WORKER_CPUS": "a-b"})
