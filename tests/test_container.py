"""The container image (docker/Dockerfile): its CLI, `bertd serve` with the health check, and a
`bertd demo` run inside the container against it.

Runs the image named by BERTD_TEST_IMAGE (default bertd:test) and never builds it: CI builds it in
its own step (.ci/build-image, which runs docker/build-image.sh). Skips, saying why, where no Docker
engine answers or the image is missing. Every container here runs with `--network host` or
`--network none` and is reached at 127.0.0.1 only; all of them, and their volume, are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from bertd import __version__

pytestmark = pytest.mark.container

IMAGE_VARIABLE = "BERTD_TEST_IMAGE"
# `bertd demo --url` names the base model; inside the container it builds this tiny one into
# DEMO_DIR/base_models, where the server looks for base models (BASE_MODELS_DIR).
DEMO_BASE_MODEL = "demo-tiny-bert"
DEMO_DIR = "/var/lib/bertd/demo"


def docker(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=timeout, check=False)


def first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "").strip()


@pytest.fixture(scope="module")
def image() -> str:
    name = os.environ.get(IMAGE_VARIABLE, "bertd:test")
    build_hint = f"build {name} with docker/build-image.sh (CI: .ci/build-image)"
    if shutil.which("docker") is None:
        pytest.skip(f"no docker command; .ci/build-image installs Docker and builds {name}")
    try:
        engine = docker("version", "--format", "{{.Server.Version}}", timeout=30)
    except subprocess.TimeoutExpired:
        pytest.skip("the Docker engine did not answer `docker version` within 30 s")
    if engine.returncode != 0:
        pytest.skip(f"no Docker engine answers ({first_line(engine.stderr) or 'docker version failed'}); "
                    f"start dockerd, then {build_hint}")
    if docker("image", "inspect", name, timeout=30).returncode != 0:
        pytest.skip(f"no image {name} ({IMAGE_VARIABLE}): {build_hint}")
    return name


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def container_names() -> Iterator[dict[str, str]]:
    """Names for one container and its data volume, both removed afterwards whatever happened."""
    suffix = uuid.uuid4().hex[:12]
    names = {"container": f"bertd-test-{suffix}", "volume": f"bertd-test-{suffix}"}
    yield names
    docker("rm", "--force", "--volumes", names["container"], timeout=120)
    docker("volume", "rm", "--force", names["volume"], timeout=60)


def test_the_image_runs_the_bertd_command_as_a_user_without_root(image: str) -> None:
    version = docker("run", "--rm", "--network", "none", image, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"bertd {__version__}"

    user = docker("run", "--rm", "--network", "none", "--entrypoint", "id", image, "-u")
    assert user.returncode == 0, user.stderr
    assert user.stdout.strip() not in ("", "0")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_image_serves_and_trains_the_demo_model(image: str, container_names: dict[str, str]) -> None:
    name, volume = container_names["container"], container_names["volume"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    assert docker("volume", "create", volume).returncode == 0

    started = docker(
        "run", "--detach", "--name", name, "--init", "--network", "host",
        "--volume", f"{volume}:/var/lib/bertd",
        # API_PORT also tells the image's HEALTHCHECK where to look.
        "--env", "API_HOST=127.0.0.1", "--env", f"API_PORT={port}", "--env", "HF_HUB_OFFLINE=1",
        "--env", f"BASE_MODELS_DIR={DEMO_DIR}/base_models", "--env", "LOG_LEVEL=INFO",
        "--health-interval", "2s", "--health-start-period", "5s",
        image, "serve", "--host", "127.0.0.1", "--port", str(port),
    )
    assert started.returncode == 0, started.stderr

    def logs() -> str:
        result = docker("logs", "--tail", "40", name)
        return result.stdout + result.stderr

    health = None
    deadline = time.monotonic() + 120
    while health is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/health", timeout=5) as response:
                health = (response.status, json.loads(response.read()))
        except OSError:
            state = docker("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            assert state in ("created", "running"), f"the container is {state}:\n{logs()}"
            time.sleep(0.5)
    assert health is not None, f"no answer from {url}/api/v1/health within 120 s:\n{logs()}"
    assert health[0] == 200
    assert health[1]["status"] == "ok" and health[1]["version"] == __version__

    # The image's own CLI, inside the container, against the server it runs.
    demo = docker("exec", name, "bertd", "demo", "--url", url, "--base-model", DEMO_BASE_MODEL, "--dir", DEMO_DIR,
                  timeout=720)
    assert demo.returncode == 0, f"bertd demo exited {demo.returncode}:\n{demo.stdout}\n{demo.stderr}\n{logs()}"
    assert "best epoch" in demo.stdout, demo.stdout

    deadline = time.monotonic() + 60
    while (status := docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()) != "healthy":
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == "healthy", f"the image's HEALTHCHECK says {status!r}"

    stopped = docker("stop", "--time", "60", name, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0", logs()
    assert "bertd stopped" in logs()
