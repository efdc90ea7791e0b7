"""Training on other boxes through Celery + Redis: a real redis-server, a real API node and real
`bertd worker` processes with their own data folders standing in for boxes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from bertd.cluster.contract import claim_key, stream_key
from bertd.protocol import decode_message
from bertd.testing.server_process import ServerProcess, free_port, start_server

from datagen import labelled_frame, write_csv

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server is not installed (Debian: apt-get install redis-server)")

TASKS = "/api/v1/training/tasks"
TOKEN = "cluster-test-token"
TESTS = Path(__file__).resolve().parent


@dataclass
class RedisServer:
    directory: Path
    port: int
    process: subprocess.Popen | None = None

    def start(self) -> None:
        # Persistence on, as the documented set-up has it: a restart keeps the streams.
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        with redis.Redis(port=self.port) as client:
            for _ in range(100):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@dataclass
class Cluster:
    directory: Path
    base_models_dir: Path
    redis: RedisServer
    api: ServerProcess
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def worker_environment(self, token: str | None = TOKEN, function: str = "standin:steady") -> dict[str, str]:
        environment = {**os.environ, "BERTD_URL": self.api.url, "BROKER_URL": self.redis.url, "LOG_LEVEL": "INFO",
                       "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(TESTS), "BERTD_TRAINING_FUNCTION": function}
        environment.pop("WORKER_TOKEN", None)
        if token is not None:
            environment["WORKER_TOKEN"] = token
        return environment

    def start_worker(self, name: str, token: str | None = TOKEN, function: str = "standin:steady",
                     cpus: str | None = None) -> subprocess.Popen:
        # A session of its own: killing the process group kills the whole box (worker and children).
        pinned = ["taskset", "-c", cpus] if cpus is not None else []
        with (self.directory / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen([*pinned, sys.executable, "-m", "bertd", "worker", "--name", name, "--data-dir",
                                        str(self.directory / name)], env=self.worker_environment(token, function),
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers[name] = process
        return process

    def wait_for_workers(self, names: set[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, answer = self.api.request("GET", "/api/v1/workers")
            if {w["name"] for w in answer["workers"] if w["alive"]} >= names:
                return
            time.sleep(0.2)
        raise AssertionError(f"workers {names} did not connect: {answer}")

    def stop_workers(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.workers.clear()

    def create(self, filename: str, **hyperparameters: Any) -> dict[str, Any]:
        body = {"model_name_cn": "集群", "model_name_en": "cluster", "training_data_file": filename,
                "base_model": "tiny-bert",
                "hyperparameters": {"text_column": "内容", "label_column": "标签", "epochs": 1,
                                    "max_sequence_length": 32, **hyperparameters}}
        status, task = self.api.request("POST", TASKS, body)
        assert status == 201, task
        return task

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")


@pytest.fixture
def cluster(tmp_path: Path, base_models_dir: Path) -> Iterator[Cluster]:
    broker = RedisServer(tmp_path, free_port())
    broker.start()
    api = start_server(tmp_path / "api", base_models_dir, tmp_path / "api.log", BROKER_URL=broker.url,
                       WORKER_TOKEN=TOKEN)
    setup = Cluster(tmp_path, base_models_dir, broker, api)
    data = write_csv(tmp_path / "集群数据.csv", labelled_frame(rows_per_label=16, seed=3))
    assert api.upload(data)[0] == 201
    try:
        yield setup
    finally:  # the setup's: a test may have restarted the API node or Redis
        setup.stop_workers()
        setup.api.stop()
        setup.redis.stop()


def watch(cluster: Cluster, task_ids: list[str], until: set[str], timeout: float = 90
          ) -> tuple[dict[str, dict], dict[str, float], dict[str, float], int]:
    """Poll until every task is in `until`: the last records, when each was first seen running and
    ended (monotonic), and the most tasks seen running at once."""
    started: dict[str, float] = {}
    ended: dict[str, float] = {}
    most = 0
    deadline = time.monotonic() + timeout
    records: dict[str, dict] = {}
    while time.monotonic() < deadline:
        records = {task_id: cluster.api.request("GET", f"{TASKS}/{task_id}")[1] for task_id in task_ids}
        now = time.monotonic()
        running = [t for t, r in records.items() if r["status"] == "training" and r["worker"]]
        most = max(most, len(running))
        for task_id in running:
            started.setdefault(task_id, now)
        for task_id, record in records.items():
            if record["status"] in ("completed", "failed", "stopped"):
                ended.setdefault(task_id, now)
        if all(record["status"] in until for record in records.values()):
            return records, started, ended, most
        time.sleep(0.05)
    raise AssertionError(f"tasks did not reach {until}: {[(r['status'], r['worker']) for r in records.values()]}")


@needs_redis
@pytest.mark.slow
def test_two_boxes_share_the_queue_in_fifo_order_and_a_dead_box_fails_only_its_task(cluster: Cluster) -> None:
    cluster.start_worker("box-a")
    cluster.start_worker("box-b")
    cluster.wait_for_workers({"box-a", "box-b"})
    ids = [cluster.create("集群数据.csv", random_seed=60)["task_id"] for _ in range(4)]  # ~1.2 s each
    records, started, ended, most = watch(cluster, ids, {"completed"})
    assert most == 2  # never more than the two slots
    assert {record["worker"] for record in records.values()} == {"box-a", "box-b"}
    assert sorted(started, key=started.get) == ids  # FIFO
    # Each of the last two starts soon after a slot frees: not after the next heartbeat (3 s), and not
    # behind a busy box. Two seconds leaves room for a loaded CI machine (1.3 s seen there).
    for later in ids[2:]:
        freed = max(moment for moment in ended.values() if moment <= started[later])
        assert started[later] - freed < 2.0, (later, started[later] - freed)

    # A box whose worker and children are killed at once: its task fails naming it, the queue goes on.
    victim = cluster.create("集群数据.csv", random_seed=2000)["task_id"]  # 40 s if left alone
    follower = cluster.create("集群数据.csv", random_seed=30)["task_id"]
    running = cluster.api.wait_for(victim, lambda t: t["worker"] is not None and t["progress"]["step"] >= 1)
    box = running["worker"]
    killed_at = time.monotonic()
    os.killpg(cluster.workers[box].pid, signal.SIGKILL)
    failed = cluster.api.wait_for(victim, lambda t: t["status"] == "failed", timeout=40)
    assert time.monotonic() - killed_at < 30
    assert f"worker {box} stopped answering" in failed["error_message"]
    done = cluster.api.wait_for(follower, lambda t: t["status"] == "completed", timeout=60)
    assert done["worker"] != box
    # Acknowledged when it started, the job is never delivered again: one claim, one start, ever.
    time.sleep(6)
    with redis.Redis(port=cluster.redis.port) as broker:
        [stream] = list(broker.scan_iter(match=f"bertd:run:{victim}:*"))
        run_id = stream.decode().rsplit(":", 1)[1]
        assert broker.get(claim_key(victim, run_id)).decode() == box
        starts = [decode_message(fields[b"m"]) for _, fields in broker.xrange(stream_key(victim, run_id))]
    assert [message.type for message in starts].count("started") == 1
    assert cluster.api.request("GET", f"{TASKS}/{victim}")[1]["status"] == "failed"


@needs_redis
@pytest.mark.slow
def test_stops_restarts_of_the_api_node_and_of_redis_lose_and_repeat_nothing(cluster: Cluster) -> None:
    cluster.start_worker("box-a", function="standin:narrated")
    cluster.wait_for_workers({"box-a"})
    # Stop while queued (the one slot is busy): it is never sent, never claimed.
    busy = cluster.create("集群数据.csv", random_seed=500)["task_id"]  # 20 steps of 0.5 s
    queued = cluster.create("集群数据.csv", random_seed=50)["task_id"]
    cluster.api.wait_for(busy, lambda t: t["worker"] == "box-a" and t["progress"]["step"] >= 2)
    status, answer = cluster.api.request("POST", f"{TASKS}/{queued}/stop")
    assert status == 202 and answer["status"] == "stopped"

    # The API node restarts mid-task; then Redis does. The run goes on on its box throughout.
    cluster.api.stop()
    time.sleep(1.0)
    cluster.api = start_server(cluster.directory / "api", cluster.base_models_dir, cluster.directory / "api.log",
                               port=int(cluster.api.url.rsplit(":", 1)[1]), BROKER_URL=cluster.redis.url,
                               WORKER_TOKEN=TOKEN)
    during = cluster.api.wait_for(busy, lambda t: t["progress"]["step"] >= 1, interval=0.05)
    assert during["progress"]["step"] < 17, "the task ended before Redis could be restarted under it"
    cluster.redis.stop()
    time.sleep(1.5)
    cluster.redis.start()
    done = cluster.api.wait_for(busy, lambda t: t["status"] in ("completed", "failed"), timeout=90)
    assert done["status"] == "completed", done["error_message"]
    _, answer = cluster.api.request("GET", f"{TASKS}/{busy}/events?limit=1000")
    warnings = [event["data"]["message"] for event in answer["events"] if event["type"] == "warning"]
    assert warnings == [f"step {step}" for step in range(1, 21)]  # each once, in order
    assert [event["data"]["worker"] for event in answer["events"] if event["type"] == "started"] == ["box-a"]
    never = cluster.api.request("GET", f"{TASKS}/{queued}")[1]
    assert never["worker"] is None and never["started_at"] is None

    # Stop of a running task: stopped, no model kept.
    running = cluster.create("集群数据.csv", random_seed=1000)["task_id"]
    cluster.api.wait_for(running, lambda t: t["worker"] == "box-a" and t["progress"]["step"] >= 1)
    assert cluster.api.request("POST", f"{TASKS}/{running}/stop")[1]["status"] == "stopping"
    stopped = cluster.api.wait_for(running, lambda t: t["status"] in ("stopped", "failed"), timeout=30)
    assert stopped["status"] == "stopped" and stopped["artifacts"] is None
    assert not (cluster.directory / "api" / "models" / running).exists()


@needs_redis
@pytest.mark.slow
def test_the_model_comes_back_whole_and_a_worker_without_the_token_gets_nothing(cluster: Cluster) -> None:
    # Wrong or missing token: the worker refuses to start before it touches the queue.
    for token in ("wrong-token", None):
        refused = cluster.start_worker(f"intruder-{token}", token=token)
        assert refused.wait(timeout=60) == 2
        assert "no task was taken" in cluster.log(f"intruder-{token}") or "WORKER_TOKEN" in cluster.log(
            f"intruder-{token}")
    task = cluster.create("集群数据.csv", random_seed=10)["task_id"]
    time.sleep(2)
    assert cluster.api.request("GET", f"{TASKS}/{task}")[1]["status"] == "queued"  # nobody took it

    # On one core: the box trains with its own cores (one thread), not the API node's figure.
    cluster.start_worker("gpu-box", function="bertd.training.loop:run_training",
                         cpus="0" if shutil.which("taskset") else None)
    done = cluster.api.wait_for(task, lambda t: t["status"] in ("completed", "failed"), timeout=120)
    assert done["status"] == "completed", done["error_message"]
    if shutil.which("taskset"):
        assert f"task {task} training on cpu with 1 thread(s)" in cluster.log("gpu-box")
    assert done["worker"] == "gpu-box"
    model = Path(done["artifacts"]["model_path"])
    assert model.parent == cluster.directory / "api" / "models" and (model / "model.safetensors").is_file()
    status, predicted = cluster.api.request("POST", f"{TASKS}/{task}/predict", {"texts": ["工厂烟囱排放废气"]})
    assert status == 200 and predicted["predictions"][0]["label"] in ("工业废气", "扬尘", "油烟")
    # A whole sheet runs on the API node's own pool, where the model came back to, not on a box.
    status, job = cluster.api.request("POST", f"{TASKS}/{task}/predictions",
                                      {"file": "集群数据.csv", "text_column": "内容"})
    assert status == 202, job
    path = f"{TASKS}/{task}/predictions/{job['prediction_id']}"
    deadline = time.monotonic() + 60
    while (job := cluster.api.request("GET", path)[1])["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "completed" and job["rows_total"] == 48, job
    assert sum(job["label_counts"].values()) == 48
    assert job["prediction_id"] not in cluster.log("gpu-box")
    # A model whose bytes do not match their sha256 is refused and leaves nothing.
    import urllib.request

    request = urllib.request.Request(f"{cluster.api.url}/api/v1/internal/tasks/{task}/model?run_id=nope",
                                     data=b"not a tarball", method="PUT",
                                     headers={"Authorization": f"Bearer {TOKEN}", "X-Content-SHA256": "0" * 64})
    with pytest.raises(urllib.error.HTTPError) as refused_upload:
        urllib.request.urlopen(request, timeout=10)
    refused_upload.value.close()
    assert refused_upload.value.code == 409  # not the task's current run: not even read


def test_without_a_broker_nothing_imports_celery() -> None:
    """The single-box default needs no Redis and loads no Celery."""
    code = ("import sys; import bertd.server.app, bertd.cli.main, bertd.api.internal; "
            "assert not any(name.split('.')[0] in ('celery', 'kombu', 'redis') for name in sys.modules), "
            "sorted(name for name in sys.modules if name.startswith(('celery', 'kombu', 'redis')))")
    subprocess.run([sys.executable, "-c", code], check=True)
