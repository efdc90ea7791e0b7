"""`bertd worker`: the options of a worker box (each also an environment variable), then the box
itself (bertd/cluster/box.py: Celery, imported only here)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bertd.cli.language import tr
from bertd.server.config import ConfigError, parse_gpu_list, parse_log_level, parse_positive_int


def add_worker_command(commands: argparse._SubParsersAction, environment: dict[str, str]) -> None:
    worker = commands.add_parser("worker", help=tr("train on this box for an API node (Celery + Redis)"))
    worker.add_argument("--url", default=environment.get("BERTD_URL"),
                        help=tr("the API node, e.g. http://api.example:8000 (BERTD_URL)"))
    worker.add_argument("--broker", default=environment.get("BROKER_URL"),
                        help=tr("Redis URL of the broker, as the API node's (BROKER_URL)"))
    worker.add_argument("--name", default=environment.get("WORKER_NAME"),
                        help=tr("this box's name in the cluster (WORKER_NAME, default the host name)"))
    worker.add_argument("--data-dir", default=environment.get("WORKER_DATA_DIR", "./worker-data"),
                        help=tr("cache of data files and base models, and scratch (WORKER_DATA_DIR, default "
                                "./worker-data)"))
    worker.add_argument("--slots", default=environment.get("WORKER_SLOTS"),
                        help=tr("jobs at once (WORKER_SLOTS, default one per visible GPU, 1 without a GPU)"))
    worker.add_argument("--gpus", default=environment.get("GPU_DEVICES"),
                        help=tr("GPU indices the slots use, e.g. 0,1 (GPU_DEVICES, default every visible GPU)"))
    worker.set_defaults(token=environment.get("WORKER_TOKEN"), log_level=environment.get("LOG_LEVEL", "INFO"),
                        keep_spare=environment.get("KEEP_SPARE_WORKER", "true").lower() not in ("0", "false", "no"),
                        training_function=environment.get("BERTD_TRAINING_FUNCTION"))


def run_worker(arguments: argparse.Namespace) -> int:
    from bertd.cluster.box import BoxConfig, default_name, serve_worker, visible_gpus
    from bertd.server.logs import setup_worker_logging

    missing = [option for option, value in (("--url / BERTD_URL", arguments.url),
                                            ("--broker / BROKER_URL", arguments.broker),
                                            ("WORKER_TOKEN", arguments.token)) if not value]
    if missing:
        print(tr("bertd worker: {options} must be set", options=", ".join(missing)), file=sys.stderr)
        return 2
    try:
        log_level = parse_log_level("LOG_LEVEL", arguments.log_level)
        gpus_found = visible_gpus()
        gpus = (parse_gpu_list("GPU_DEVICES", arguments.gpus) if arguments.gpus
                else tuple(gpu["index"] for gpu in gpus_found))
        slots = parse_positive_int("WORKER_SLOTS", arguments.slots) if arguments.slots else max(1, len(gpus))
    except ConfigError as error:
        print(f"bertd worker: {error}", file=sys.stderr)
        return 2
    setup_worker_logging(log_level)
    config = BoxConfig(url=arguments.url, broker_url=arguments.broker, name=arguments.name or default_name(),
                       data_dir=Path(arguments.data_dir).expanduser().resolve(), slots=slots, gpus=gpus,
                       token=arguments.token, log_level=log_level, keep_spare_worker=arguments.keep_spare,
                       **({"training_function": arguments.training_function} if arguments.training_function else {}))
    return serve_worker(config, [gpu for gpu in gpus_found if gpu["index"] in gpus])
