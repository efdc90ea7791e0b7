"""Fixtures: a tiny BERT base model, test data files, and a real bertd server on a temp data dir."""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub, and inherited by every spawned worker.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# The `bertd` command's human output in English, whatever this machine's locale (bertd.cli.language);
# tests of the Chinese output set LANG themselves.
os.environ.pop("LC_ALL", None)
os.environ.pop("LC_MESSAGES", None)
os.environ["LANG"] = "C.UTF-8"

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from bertd.server.app import create_app
from bertd.server.config import Config
from bertd.testing.tiny_model import build_tiny_bert

from datagen import all_characters, labelled_frame, write_csv, write_xlsx

TINY_MODEL = "tiny-bert"


@pytest.fixture(scope="session")
def base_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("base_models")
    build_tiny_bert(directory / TINY_MODEL, [all_characters()], hidden_size=64, layers=2, heads=2)
    return directory


@pytest.fixture(scope="session")
def default_base_models_dir(tmp_path_factory: pytest.TempPathFactory, base_models_dir: Path) -> Path:
    """BASE_MODELS_DIR with the tiny model also under the default base_model name, bert-base-chinese."""
    directory = tmp_path_factory.mktemp("default_base_models")
    for name in (TINY_MODEL, "bert-base-chinese"):
        (directory / name).symlink_to(base_models_dir / TINY_MODEL, target_is_directory=True)
    return directory


@pytest.fixture
def xlsx_file(tmp_path: Path) -> Path:
    """Two sheets: 'data' (90 labelled rows, 3 labels, 2 empty texts) and 'notes'."""
    frame = labelled_frame(rows_per_label=30, seed=1)
    frame.loc[3, "内容"] = None
    frame.loc[7, "内容"] = "   "
    notes = labelled_frame(rows_per_label=3, seed=2)[["编号"]]
    return write_xlsx(tmp_path / "环境保护_测试数据.xlsx", {"data": frame, "notes": notes})


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "训练数据.csv", labelled_frame(rows_per_label=16, seed=3))


ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(aiohttp_client, tmp_path: Path, base_models_dir: Path) -> ClientFactory:
    """Start a real bertd (real SQLite file, real worker processes) and return a client for it."""

    async def factory(**overrides: object) -> TestClient:
        settings: dict[str, object] = {
            "host": "127.0.0.1",
            "data_dir": tmp_path / "data",
            "base_models_dir": base_models_dir,
            "stop_grace_seconds": 5.0,
            "kill_wait_seconds": 2.0,
            "progress_write_interval": 0.2,
            "callback_backoff_seconds": 0.05,
            "callback_timeout_seconds": 2.0,
            "log_level": "DEBUG",
            # A spare worker imports torch at every app start: most tests never train, so they
            # do without; test_pool covers the spare.
            "keep_spare_worker": False,
        }
        settings.update(overrides)
        config = Config(**settings)  # type: ignore[arg-type]
        client = await aiohttp_client(create_app(config))
        return client

    return factory


@pytest.fixture
def hub_online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This process may reach a hub (the stand-in the test starts): huggingface_hub read
    HF_HUB_OFFLINE=1 at import, so its constant is patched; telemetry is off (else its first request
    asks https://huggingface.co for an agent list), no saved token leaks in, and the Hugging Face
    cache is an empty folder of the test's own, which is returned."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    for variable in ("HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN",
                     "MODELSCOPE_API_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "modelscope-home"))
    return cache
