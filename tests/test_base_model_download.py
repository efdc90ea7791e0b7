"""Pulling base models from a Hugging Face Hub: against the stand-in hub (bertd.testing.hub_standin),
offline, with huggingface_hub's real client code.

tests/conftest.py sets HF_HUB_OFFLINE=1 before anything imports huggingface_hub, and
huggingface_hub 2 reads it once, at import, into `constants.HF_HUB_OFFLINE`; its HTTP client checks
`constants.is_offline_mode()` (that module attribute) before every request. So the `online` fixture
patches the attribute (and the environment variable, for anything that reads it later) for each
test, instead of running the pulls in a subprocess: the pulls run in a thread of the test process,
as the server will run them, and the stand-in's counters can be read directly. The fixture also
turns telemetry off (else huggingface_hub's user agent looks up an "agent harness" list at
https://huggingface.co once per process) and points the saved-token path at nothing, so no
developer's login leaks into a test."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from bertd.runtime.base_models.download import download_base_model
from bertd.runtime.base_models.files import (
    SOURCE_FILE,
    BaseModelFileError,
    check_base_model,
    find_local_base_models,
    find_partial_downloads,
    inspect_base_model,
    validate_base_model_name,
)
from bertd.runtime.base_models.hubs import BaseModelDownloadError
from bertd.runtime.base_models.partial import LOCK_FILE, STATE_FILE, discard_partial_download, select_files
from bertd.testing.hub_standin import run_hub_standin
from bertd.testing.tiny_model import build_tiny_bert

ORG_ID = "google-bert/bert-base-chinese"
PLAIN_ID = "bert-base-chinese"
WEIGHTS = "model.safetensors"
# Files a real repo has that a BERT classifier does not need: never downloaded.
UNWANTED = ("tf_model.h5", "flax_model.msgpack", "pytorch_model.bin", "onnx/model.onnx", "README.md", ".gitattributes")


@pytest.fixture(scope="module")
def repo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT as a hub repo: 3,000 CJK characters of vocabulary and hidden size 96 make
    model.safetensors about 2.3 MB (36 chunks of the stand-in's 64 KiB), so a drop half-way
    through it leaves a real half to resume."""
    folder = tmp_path_factory.mktemp("hub") / "bert-base-chinese"
    characters = "".join(chr(code) for code in range(0x4E00, 0x4E00 + 3000))
    build_tiny_bert(folder, [characters, "abcdefghijklmnopqrstuvwxyz0123456789"], hidden_size=96, layers=2, heads=2)
    for name in UNWANTED:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"not for bertd " * 100)
    return folder


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    for variable in ("HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN",
                     "MODELSCOPE_API_TOKEN", "MODELSCOPE_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    # ModelScope's client keeps a session file in its home folder (~/.modelscope).
    monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "modelscope-home"))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []

    def __call__(self, done: int, total: int | None) -> None:
        self.calls.append((done, total))


async def pull(name: str, base_models_dir: Path, **options) -> tuple[Path, Recorder]:
    """Run the blocking pull in a thread, as the server does, while the stand-in serves on the loop."""
    progress = Recorder()
    options.setdefault("backoff_seconds", 0.01)
    path = await asyncio.to_thread(download_base_model, name, "huggingface", None, base_models_dir, progress, **options)
    return path, progress


async def pull_error(name: str, base_models_dir: Path, **options) -> BaseModelDownloadError:
    with pytest.raises(BaseModelDownloadError) as caught:
        await pull(name, base_models_dir, **options)
    return caught.value


def wanted_files(repo_folder: Path) -> set[str]:
    return set(select_files([path.relative_to(repo_folder).as_posix()
                             for path in repo_folder.rglob("*") if path.is_file()]))


def safetensors_parameters(file: Path) -> int:
    with safe_open(str(file), framework="numpy") as tensors:
        return sum(math.prod(tensors.get_slice(key).get_shape()) for key in tensors.keys())


def all_paths(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


async def test_pull_renames_the_folder_and_reports_progress(repo_folder: Path, tmp_path: Path) -> None:
    base = tmp_path / "base_models"
    async with run_hub_standin({PLAIN_ID: repo_folder}) as hub:
        started = time.monotonic()
        path, progress = await pull(PLAIN_ID, base, endpoint=hub.url)
        elapsed = time.monotonic() - started

        assert path == base / PLAIN_ID
        wanted = wanted_files(repo_folder)
        assert {"config.json", "tokenizer.json", WEIGHTS} <= wanted
        assert set(all_paths(path)) == wanted | {SOURCE_FILE}  # no .partial, .cache, state or lock files
        assert all_paths(base) == [PLAIN_ID, *(f"{PLAIN_ID}/{name}" for name in all_paths(path))]
        for name in wanted:
            assert (path / name).read_bytes() == (repo_folder / name).read_bytes(), name
        for name in UNWANTED:
            assert hub.stats(PLAIN_ID, name).get_requests == 0, name
        assert hub.stats(PLAIN_ID, WEIGHTS).ranges == [None]

        total = sum((repo_folder / name).stat().st_size for name in wanted)
        assert progress.calls[0] == (0, total)
        assert progress.calls[-1] == (total, total)
        assert [done for done, _ in progress.calls] == sorted(done for done, _ in progress.calls)
        assert len(progress.calls) <= elapsed / 0.25 + 3  # at most a few a second

        info = inspect_base_model(path)
        config = json.loads((repo_folder / "config.json").read_text())
        assert (info.hidden_size, info.num_layers, info.model_type) == (96, 2, "bert")
        assert info.vocab_size == config["vocab_size"] >= 3000
        assert info.parameters == safetensors_parameters(repo_folder / WEIGHTS)
        assert info.size_bytes == sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        assert (info.source, info.repo_id, info.revision) == ("huggingface", PLAIN_ID, hub.commit_sha(PLAIN_ID))
        assert info.weights == (WEIGHTS,)
        check_base_model(path)

        # Pulling again finds it there and asks the hub nothing.
        hub.reset_counters()
        again, progress = await pull(PLAIN_ID, base, endpoint=hub.url)
        assert again == path and hub.requests == [] and progress.calls == []


async def test_a_dropped_connection_resumes_with_a_range_request(repo_folder: Path, tmp_path: Path) -> None:
    size = (repo_folder / WEIGHTS).stat().st_size
    async with run_hub_standin({PLAIN_ID: repo_folder}) as hub:
        hub.drop_connection(WEIGHTS, after_bytes=size // 2)
        path, progress = await pull(PLAIN_ID, tmp_path / "base_models", endpoint=hub.url)

        stats = hub.stats(PLAIN_ID, WEIGHTS)
        assert stats.drops == 1 and stats.get_requests == 2
        first, resumed = stats.ranges
        assert first is None and resumed is not None
        offset = int(resumed.removeprefix("bytes=").removesuffix("-"))
        assert size // 4 < offset <= size // 2  # picked up about where the drop was
        assert stats.bytes_sent - size < size // 8  # far fewer bytes sent twice than the file has
        assert (path / WEIGHTS).read_bytes() == (repo_folder / WEIGHTS).read_bytes()
        assert progress.calls[-1][0] == progress.calls[-1][1]
        assert not (tmp_path / "base_models" / f"{PLAIN_ID}.partial").exists()


async def test_a_failed_pull_keeps_its_partial_folder_and_the_next_one_resumes(repo_folder: Path,
                                                                             tmp_path: Path) -> None:
    base = tmp_path / "base_models"
    size = (repo_folder / WEIGHTS).stat().st_size
    async with run_hub_standin({ORG_ID: repo_folder}) as hub:
        # Half the file, then a connection that drops before any byte: a try that got bytes
        # resets the count, so it takes a try without progress to exhaust retries=1.
        hub.drop_connection(WEIGHTS, after_bytes=size // 2)
        hub.drop_connection(WEIGHTS, after_bytes=0)
        error = await pull_error(ORG_ID, base, endpoint=hub.url, retries=1)
        assert error.kind == "network" and error.retryable
        assert hub.url in str(error) and ORG_ID in str(error) and "hf-mirror.com" in str(error)
        partial = base / "google-bert" / "bert-base-chinese.partial"
        assert find_partial_downloads(base) == [ORG_ID]
        assert find_local_base_models(base) == []
        assert (partial / f"{WEIGHTS}.incomplete").stat().st_size >= size // 2

        # As after a restart: a new pull picks the half-file up.
        path, progress = await pull(ORG_ID, base, endpoint=hub.url)
        ranges = hub.stats(ORG_ID, WEIGHTS).ranges
        assert ranges[0] is None and len(ranges) == 3 and all(r is not None for r in ranges[1:])
        assert progress.calls[0][0] >= size // 2  # started from what was on disk
        assert (path / WEIGHTS).read_bytes() == (repo_folder / WEIGHTS).read_bytes()
        assert not partial.exists() and find_partial_downloads(base) == []


async def test_hub_ids_with_an_organisation_nest_their_folder(repo_folder: Path, tmp_path: Path) -> None:
    base = tmp_path / "base_models"
    async with run_hub_standin({ORG_ID: repo_folder, PLAIN_ID: repo_folder}) as hub:
        org_path, _ = await pull(ORG_ID, base, endpoint=hub.url)
        plain_path, _ = await pull(PLAIN_ID, base, endpoint=hub.url)
    assert org_path == base / "google-bert" / "bert-base-chinese"
    assert plain_path == base / PLAIN_ID
    assert [(m.name, m.path) for m in find_local_base_models(base)] == [(PLAIN_ID, plain_path), (ORG_ID, org_path)]
    assert inspect_base_model(org_path).repo_id == ORG_ID


async def test_a_missing_repository_fails_at_once_and_leaves_no_folder(repo_folder: Path, tmp_path: Path) -> None:
    base = tmp_path / "base_models"
    base.mkdir()
    async with run_hub_standin({ORG_ID: repo_folder}) as hub:
        started = time.monotonic()
        error = await pull_error("nobody/no-such-model", base, endpoint=hub.url, retries=5, backoff_seconds=1.0)
        assert time.monotonic() - started < 3.0  # the first retry would wait 1 s, the second 2 s more
        assert len(hub.requests) == 1  # no retries
    assert error.kind == "not_found" and not error.retryable
    message = str(error)
    assert f"'nobody/no-such-model' from the Hugging Face Hub at {hub.url}" in message
    assert "https://huggingface.co/models" in message and "HF_TOKEN" in message
    assert list(base.iterdir()) == []


async def test_an_endpoint_that_is_not_a_hub_is_named(aiohttp_server, tmp_path: Path) -> None:
    """A proxy or captive portal that answers every URL with a web page."""
    from aiohttp import web

    async def login_page(request: web.Request) -> web.Response:
        return web.Response(text="<html>请先登录</html>", content_type="text/html")

    portal = web.Application()
    portal.router.add_route("*", "/{tail:.*}", login_page)
    server = await aiohttp_server(portal)
    endpoint = str(server.make_url("")).rstrip("/")
    error = await pull_error(ORG_ID, tmp_path / "base_models", endpoint=endpoint)
    assert error.kind == "server" and f"at {endpoint}" in str(error) and "HF_ENDPOINT" in str(error)
    assert not (tmp_path / "base_models").exists()


async def test_the_endpoint_comes_from_HF_ENDPOINT(repo_folder: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async with run_hub_standin({ORG_ID: repo_folder}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        path, _ = await pull(ORG_ID, tmp_path / "base_models")
        assert hub.stats(ORG_ID, WEIGHTS).get_requests == 1
        assert json.loads((path / SOURCE_FILE).read_text())["endpoint"] == hub.url
        error = await pull_error("nobody/nothing", tmp_path / "base_models")
        assert hub.url in str(error)


async def test_a_token_is_sent_as_a_bearer_header(repo_folder: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "base_models"
    async with run_hub_standin({ORG_ID: repo_folder}, token="hf_secret") as hub:
        error = await pull_error(ORG_ID, base, endpoint=hub.url)
        assert error.kind == "not_found" and "HF_TOKEN" in str(error)
        assert hub.requests[0].authorization is None

        error = await pull_error(ORG_ID, base, endpoint=hub.url, token="hf_wrong")
        assert error.kind == "unauthorized"

        hub.reset_counters()
        await pull(ORG_ID, base, endpoint=hub.url, token="hf_secret")
        assert hub.requests and {r.authorization for r in hub.requests} == {"Bearer hf_secret"}

        # HF_TOKEN when none is given.
        hub.reset_counters()
        monkeypatch.setenv("HF_TOKEN", "hf_secret")
        await pull(ORG_ID, tmp_path / "other", endpoint=hub.url)
        assert hub.requests and {r.authorization for r in hub.requests} == {"Bearer hf_secret"}


async def test_offline_mode_fails_before_any_request(repo_folder: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    async with run_hub_standin({ORG_ID: repo_folder}) as hub:
        error = await pull_error(ORG_ID, tmp_path / "base_models", endpoint=hub.url)
        assert hub.requests == []
    assert error.kind == "offline" and "HF_HUB_OFFLINE" in str(error)
    assert not (tmp_path / "base_models").exists()


async def test_cancel_keeps_the_partial_folder_for_a_later_pull(repo_folder: Path, tmp_path: Path) -> None:
    base = tmp_path / "base_models"
    size = (repo_folder / WEIGHTS).stat().st_size
    async with run_hub_standin({ORG_ID: repo_folder}, chunk_delay=0.01) as hub:
        seen: list[int] = []

        def should_cancel() -> bool:
            return bool(seen) and seen[-1] > size // 3

        progress = Recorder()

        def on_progress(done: int, total: int | None) -> None:
            seen.append(done)
            progress(done, total)

        with pytest.raises(BaseModelDownloadError) as caught:
            await asyncio.to_thread(download_base_model, ORG_ID, "huggingface", None, base, on_progress,
                                    endpoint=hub.url, should_cancel=should_cancel, progress_interval=0.0)
        assert caught.value.kind == "cancelled"
        assert find_partial_downloads(base) == [ORG_ID]

        hub.chunk_delay = 0.0
        path, _ = await pull(ORG_ID, base, endpoint=hub.url)
        assert hub.stats(ORG_ID, WEIGHTS).ranges[-1] is not None
        assert (path / WEIGHTS).read_bytes() == (repo_folder / WEIGHTS).read_bytes()

        # discard_partial_download: nothing left to discard now; a fresh partial is removed.
        assert discard_partial_download(base, ORG_ID) is False
        (base / "google-bert" / "other.partial").mkdir()
        assert discard_partial_download(base, "google-bert/other") is True
        assert find_partial_downloads(base) == []


async def test_a_repository_whose_model_does_not_load_is_refused(repo_folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((repo_folder / name).read_bytes())
    (broken / WEIGHTS).write_bytes((repo_folder / WEIGHTS).read_bytes()[:-1000])  # truncated upstream
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    for name in ("config.json", "tokenizer.json", "tf_model.h5"):
        (no_weights / name).write_bytes((repo_folder / name).read_bytes())
    base = tmp_path / "base_models"
    async with run_hub_standin({"someone/broken": broken, "someone/tf-only": no_weights}) as hub:
        error = await pull_error("someone/broken", base, endpoint=hub.url)
        assert error.kind == "broken" and WEIGHTS in str(error)
        error = await pull_error("someone/tf-only", base, endpoint=hub.url)
        assert error.kind == "not_a_model" and "PyTorch weights" in str(error)
        assert hub.stats("someone/tf-only", "tf_model.h5").get_requests == 0
    assert find_partial_downloads(base) == [] and find_local_base_models(base) == []


async def test_huggingface_hub_own_snapshot_download_works_against_the_standin(repo_folder: Path,
                                                                             tmp_path: Path) -> None:
    """The stand-in answers the routes the library itself uses (model info, tree, HEAD and GET
    resolve), and hf_hub_download retries a dropped connection within one call (its http_get sleeps
    1 s first). That retry asks for a Range only past whole 10 MiB read chunks (it reads with
    iter_bytes(chunk_size=10 MiB), and the bytes of an unfinished chunk are lost with the error), so
    a file this small starts over: one reason bertd does its own transfer."""
    from huggingface_hub import hf_hub_download, snapshot_download

    size = (repo_folder / WEIGHTS).stat().st_size
    async with run_hub_standin({ORG_ID: repo_folder}) as hub:
        folder = await asyncio.to_thread(
            snapshot_download, ORG_ID, endpoint=hub.url, local_dir=tmp_path / "snapshot",
            cache_dir=tmp_path / "cache", allow_patterns=["*.json", "vocab.txt"])
        assert (Path(folder) / "config.json").read_bytes() == (repo_folder / "config.json").read_bytes()
        assert any(r.path.startswith(f"/api/models/{ORG_ID}/tree/") for r in hub.requests)

        hub.drop_connection(WEIGHTS, after_bytes=size // 2)
        file = await asyncio.to_thread(hf_hub_download, ORG_ID, WEIGHTS, endpoint=hub.url,
                                       local_dir=tmp_path / "single", cache_dir=tmp_path / "cache")
        assert Path(file).read_bytes() == (repo_folder / WEIGHTS).read_bytes()
        stats = hub.stats(ORG_ID, WEIGHTS)
        assert stats.drops == 1 and stats.get_requests == 2


# -- ModelScope, through its own client (modelscope_hub) ------------------------------------------

MS_ID = "tiansz/bert-base-chinese"


async def test_modelscope_pull_resumes_a_dropped_connection(repo_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("modelscope_hub")
    base = tmp_path / "base_models"
    size = (repo_folder / WEIGHTS).stat().st_size
    progress = Recorder()
    async with run_hub_standin({MS_ID: repo_folder}) as hub:
        hub.drop_connection(WEIGHTS, after_bytes=size // 2)
        path = await asyncio.to_thread(download_base_model, MS_ID, "modelscope", None, base, progress,
                                       endpoint=hub.url, backoff_seconds=0.01)
        assert any(r.path == f"/api/v1/models/{MS_ID}/repo/files" for r in hub.requests)
        stats = hub.stats(MS_ID, WEIGHTS)
        first, resumed = stats.ranges
        assert first is None and resumed is not None and resumed.startswith("bytes=")
        assert stats.bytes_sent - size < size // 8
        for name in UNWANTED:
            assert hub.stats(MS_ID, name).get_requests == 0, name

    assert path == base / "tiansz" / "bert-base-chinese"
    assert set(all_paths(path)) == wanted_files(repo_folder) | {SOURCE_FILE}
    assert (path / WEIGHTS).read_bytes() == (repo_folder / WEIGHTS).read_bytes()
    info = inspect_base_model(path)
    assert (info.source, info.repo_id, info.hidden_size) == ("modelscope", MS_ID, 96)
    total = sum((repo_folder / name).stat().st_size for name in wanted_files(repo_folder))
    assert progress.calls[0] == (0, total) and progress.calls[-1] == (total, total)
    assert find_partial_downloads(base) == []


async def test_modelscope_cancel_then_resume(repo_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("modelscope_hub")
    base = tmp_path / "base_models"
    size = (repo_folder / WEIGHTS).stat().st_size
    async with run_hub_standin({MS_ID: repo_folder}, chunk_delay=0.01) as hub:
        seen: list[int] = []
        with pytest.raises(BaseModelDownloadError) as caught:
            await asyncio.to_thread(download_base_model, MS_ID, "modelscope", None, base,
                                    lambda done, total: seen.append(done), endpoint=hub.url,
                                    should_cancel=lambda: bool(seen) and seen[-1] > size // 3, progress_interval=0.0)
        assert caught.value.kind == "cancelled"
        assert find_partial_downloads(base) == [MS_ID]
        hub.chunk_delay = 0.0
        path = await asyncio.to_thread(download_base_model, MS_ID, "modelscope", None, base, Recorder(),
                                       endpoint=hub.url)
        assert hub.stats(MS_ID, WEIGHTS).ranges[-1] is not None
        assert (path / WEIGHTS).read_bytes() == (repo_folder / WEIGHTS).read_bytes()


async def test_modelscope_missing_repository_and_endpoint_from_the_environment(
        repo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("modelscope_hub")
    base = tmp_path / "base_models"
    async with run_hub_standin({MS_ID: repo_folder}) as hub:
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", hub.url)
        started = time.monotonic()
        with pytest.raises(BaseModelDownloadError) as caught:
            await asyncio.to_thread(download_base_model, "nobody/no-such-model", "modelscope", None, base,
                                    Recorder(), retries=5, backoff_seconds=1.0)
        assert time.monotonic() - started < 3.0
        assert len(hub.requests) == 1  # no retries
        assert caught.value.kind == "not_found"
        assert f"'nobody/no-such-model' from ModelScope at {hub.url}" in str(caught.value)
        assert not base.exists()


async def test_modelscope_without_its_client_says_what_to_install(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "modelscope_hub", None)  # import fails
    with pytest.raises(BaseModelDownloadError) as caught:
        download_base_model(MS_ID, "modelscope", None, tmp_path, Recorder())
    assert caught.value.kind == "unsupported_source" and "pip install modelscope-hub" in str(caught.value)


# -- the pure pieces -----------------------------------------------------------------------------


def test_select_files_takes_only_what_a_classifier_needs() -> None:
    repo = ["config.json", "tokenizer.json", "vocab.txt", "model.safetensors", "pytorch_model.bin", "tf_model.h5",
            "flax_model.msgpack", "onnx/model.onnx", "README.md", "tokenizer_config.json"]
    assert select_files(repo) == ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                                  "model.safetensors"]
    assert select_files(["config.json", "vocab.txt", "pytorch_model.bin", "tf_model.h5"])[-1] == "pytorch_model.bin"
    sharded = ["config.json", "tokenizer.json", "model.safetensors.index.json", "model-00002-of-00002.safetensors",
               "model-00001-of-00002.safetensors", "pytorch_model.bin"]
    assert select_files(sharded)[2:] == ["model.safetensors.index.json", "model-00001-of-00002.safetensors",
                                         "model-00002-of-00002.safetensors"]
    for files, reason in ((["tokenizer.json", "model.safetensors"], "config.json"),
                          (["config.json", "model.safetensors"], "tokenizer"),
                          (["config.json", "vocab.txt", "tf_model.h5", "model.onnx"], "PyTorch weights")):
        with pytest.raises(ValueError, match=reason):
            select_files(files)


def test_names_that_could_leave_the_folder_are_refused() -> None:
    for good in ("bert-base-chinese", "google-bert/bert-base-chinese", "hfl/chinese-roberta-wwm-ext", "a_b.c"):
        assert validate_base_model_name(good) == good
    for bad in ("", "../etc", "a/../b", "/abs", "a/b/c", ".hidden", "x.partial", "a--b", "trailing-", "sp ace"):
        with pytest.raises(ValueError):
            validate_base_model_name(bad)


def test_check_and_inspect_name_the_broken_file(repo_folder: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", WEIGHTS):
        (model / name).write_bytes((repo_folder / name).read_bytes())
    check_base_model(model)

    weights = (model / WEIGHTS).read_bytes()
    (model / WEIGHTS).write_bytes(weights[: len(weights) // 2])
    with pytest.raises(BaseModelFileError, match="truncated") as caught:
        check_base_model(model)
    assert caught.value.path == model / WEIGHTS
    assert inspect_base_model(model).parameters is None  # listed, with what can be read
    (model / WEIGHTS).write_bytes(weights)

    (model / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BaseModelFileError, match="tokenizer.json"):
        check_base_model(model)
    (model / "tokenizer.json").unlink()
    with pytest.raises(BaseModelFileError, match="no tokenizer"):
        check_base_model(model)

    (model / "config.json").unlink()
    with pytest.raises(BaseModelFileError, match="config.json") as caught:
        inspect_base_model(model)
    assert caught.value.path == model / "config.json"


def test_find_local_base_models_skips_partial_and_hidden_folders(repo_folder: Path, tmp_path: Path) -> None:
    base = tmp_path / "base_models"
    for name in ("tiny", "org/model", "org/half.partial", "loose.partial", ".hidden", "org/model/nested"):
        (base / name).mkdir(parents=True)
        (base / name / "config.json").write_text("{}", encoding="utf-8")
    (base / "empty").mkdir()
    assert [m.name for m in find_local_base_models(base)] == ["org/model", "tiny"]
    assert find_partial_downloads(base) == ["loose", "org/half"]
    assert find_local_base_models(tmp_path / "missing") == []
    assert inspect_base_model(base / "tiny").source == "local"
    assert STATE_FILE.startswith(".") and LOCK_FILE.startswith(".")
