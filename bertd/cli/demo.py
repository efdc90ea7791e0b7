"""`bertd demo`: prove an install works, offline. Builds a tiny base model and a small labelled
Chinese dataset, starts a server in a temporary folder (or uses --url), trains with a live
progress bar, predicts a few sentences, and says where the model is."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from bertd.cli.client import Client, ClientError, follow, progress_line
from bertd.cli.language import tr, word
from bertd.testing.example_data import LABEL_WORDS, labelled_rows
from bertd.testing.server_process import ServerExited, ServerProcess, start_server

TINY_BASE_MODEL = "demo-tiny-bert"
# Built from the demo's own words: a tiny model trained on characters cannot be expected to place
# phrasing it never saw, and the demo is there to show the install works.
SAMPLES = ["化工厂锅炉排放废气，居民反映严重。", "工地渣土沙石飞扬，尘土影响小区。", "饭店厨房油烟很大，烧烤排烟到晚上。"]
DEMO_WORDS_PER_LABEL = 7


def demo_rows(rows_per_label: int = 40, seed: int = 0) -> list[dict[str, str]]:
    return labelled_rows(rows_per_label, seed, words_per_label=DEMO_WORDS_PER_LABEL, text_column="内容合并",
                         label_column="标签列", id_column=None)


def write_demo_files(folder: Path) -> tuple[Path, Path]:
    import pandas as pd

    from bertd.testing.tiny_model import build_tiny_bert

    data = folder / "环境保护_演示数据.xlsx"
    frame = pd.DataFrame(demo_rows())
    frame.to_excel(data, index=False, sheet_name="data")
    characters = "".join(frame["内容合并"]) + "".join(SAMPLES) + "".join(LABEL_WORDS)
    model = build_tiny_bert(folder / "base_models" / TINY_BASE_MODEL, [characters], hidden_size=64, layers=2)
    return data, model


def start_local_server(folder: Path) -> tuple[ServerProcess, str]:
    try:
        server = start_server(folder / "data", folder / "base_models", log_path=None, start_timeout=90,
                              LOG_LEVEL="WARNING")
    except ServerExited as error:
        raise ClientError(str(error).splitlines()[0]) from None
    return server, server.url


async def run_demo(url: str, token: str | None, data: Path, base_model: str) -> int:
    async with Client(url, token) as client:
        uploaded = await client.upload(data)
        print(tr("uploaded {filename}: {rows} rows", filename=uploaded["filename"], rows=uploaded["sheets"][0]["rows"]))
        task = await client.create_task({
            "model_name_cn": "演示分类器", "model_name_en": "demo", "training_data_file": uploaded["filename"],
            "base_model": base_model,
            "hyperparameters": {"text_column": "内容合并", "label_column": "标签列", "sheet_name": "data",
                                "epochs": 12, "batch_size": 8, "max_sequence_length": 64, "warmup_ratio": 0.1,
                                # The tiny random model needs a large step (3e-3 without warm-up left 2 of
                                # 10 seeds stuck at chance); a pretrained BERT wants the usual small one.
                                "learning_rate": 1e-3 if base_model == TINY_BASE_MODEL else 3e-5}})
        print(tr("training task {task_id}", task_id=task["task_id"]))
        interactive = sys.stdout.isatty()

        def show(current: dict) -> None:
            if interactive:
                print(f"\r{progress_line(current)[:150]:<150}", end="", flush=True)

        final = await follow(client, task["task_id"], show)
        print("\n" + progress_line(final) if interactive else progress_line(final))
        if final["status"] != "completed":
            print(tr("bertd demo: the task ended {status}: {message}", status=word(final["status"]),
                     message=final.get("error_message")), file=sys.stderr)
            return 1
        metrics = final["metrics"]
        print(tr("best epoch {epoch}: val_accuracy {accuracy:.3f}, val_macro_f1 {f1:.3f}", epoch=metrics["best_epoch"],
                 accuracy=metrics["val_accuracy"], f1=metrics["val_macro_f1"]))
        predictions = await client.predict(task["task_id"], SAMPLES)
        for text, prediction in zip(SAMPLES, predictions["predictions"], strict=True):
            print(f"  {prediction['label']}\t{prediction['score']:.3f}\t{text}")
        print(tr("model: {path}", path=final["artifacts"]["model_path"]))
        print(tr('load it with: transformers.pipeline("text-classification", model="{path}")',
                 path=final["artifacts"]["model_path"]))
        return 0


def demo(arguments: argparse.Namespace) -> int:
    folder = Path(arguments.dir or tempfile.mkdtemp(prefix="bertd-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(tr("demo folder: {folder}", folder=str(folder)))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data, _model = write_demo_files(folder)
    process = None
    try:
        if arguments.url:
            url, base_model = arguments.url, arguments.base_model
        else:
            process, url = start_local_server(folder)
            base_model = TINY_BASE_MODEL
            print(tr("started bertd at {url} (data in {folder})", url=url, folder=str(folder / "data")))
        return asyncio.run(run_demo(url, arguments.token, data, base_model))
    except ClientError as error:
        print(tr("bertd demo: {error}", error=str(error)), file=sys.stderr)
        return 1
    finally:
        if process is not None:
            process.stop()


def add_demo_command(commands: argparse._SubParsersAction, environment: dict[str, str]) -> None:
    command = commands.add_parser("demo", help=tr("train and use a tiny model end to end, offline"))
    command.add_argument("--url", help=tr("use this running server instead of starting one"))
    command.add_argument("--token", default=environment.get("API_TOKEN"))
    command.add_argument("--base-model", default="bert-base-chinese",
                         help=tr("with --url: a base model that server has (a tiny one is built for a local server)"))
    command.add_argument("--dir", help=tr("folder for the demo files (default: a new temporary folder)"))
