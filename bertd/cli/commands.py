"""The client side of the `bertd` command: upload, train, tasks, show, watch, stop, rm, predict,
download, and base-models / pull (base_models.py). Human output by default, one JSON document with
--json; exit 1 with one line on error."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bertd.cli.base_models import COMMANDS as BASE_MODEL_COMMANDS
from bertd.cli.base_models import add_base_model_commands, run_base_model_command
from bertd.cli.client import Client, ClientError, follow, progress_line
from bertd.cli.language import language, padded, tr, word
from bertd.cli.predict_file import predict_file
from bertd.i18n import ENGLISH
from bertd.state.records import TaskStatus


def emit(arguments: argparse.Namespace, value: Any, human: str) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2) if arguments.json else human)


def describe_task(task: dict[str, Any]) -> str:
    lines = [tr("task {task_id}  {status}  {name_cn} ({name_en})", task_id=task["task_id"], status=word(task["status"]),
                name_cn=task["model_name_cn"], name_en=task["model_name_en"]),
             tr("  data: {file}  base model: {base_model}", file=task["training_data_file"],
                base_model=task["base_model"]),
             tr("  created {created}  started {started}  finished {finished}", created=task["created_at"],
                started=task["started_at"] or "-", finished=task["finished_at"] or "-"),
             f"  {progress_line(task)}"]
    if task.get("queue_position"):
        lines.append(tr("  queue position {position}", position=task["queue_position"]))
    if task.get("checkpoint"):
        checkpoint = task["checkpoint"]
        lines.append(tr("  checkpoint: epoch {epoch}, step {step} ({at})", epoch=checkpoint["epoch"],
                        step=checkpoint["step"], at=checkpoint["at"]))
    if task.get("interruptions"):
        lines.append(tr("  continued after {count} restart(s) of the server", count=task["interruptions"]))
    metrics = task.get("metrics")
    if metrics and metrics.get("val_accuracy") is not None:
        lines.append(tr("  best epoch {epoch}: val_accuracy {accuracy:.4f}, val_macro_f1 {f1:.4f}",
                        epoch=metrics["best_epoch"], accuracy=metrics["val_accuracy"], f1=metrics["val_macro_f1"]))
        for label, scores in (metrics.get("per_class") or {}).items():
            lines.append(tr("    {label}: precision {precision:.3f} recall {recall:.3f} f1 {f1:.3f} support {support}",
                            label=label, precision=scores["precision"], recall=scores["recall"], f1=scores["f1"],
                            support=scores["support"]))
    if metrics and metrics.get("model_selection") == "last_epoch":
        lines.append(tr("  no validation rows (train_val_split 0): the last epoch ({epoch}) was saved",
                        epoch=metrics["best_epoch"]))
    if task.get("artifacts"):
        lines.append(tr("  model: {path}", path=task["artifacts"]["model_path"]))
    error = task.get("error")
    if error:
        lines.append(tr("  error [{code}]: {message}", code=error["code"], message=error["message"]))
        if error.get("hint"):
            lines.append(tr("  what to do: {hint}", hint=error["hint"]))
    elif task.get("error_message"):
        lines.append(tr("  error: {message}", message=task["error_message"]))
    return "\n".join(lines)


def worker_line(worker: dict[str, Any]) -> str:
    gpus = ", ".join(gpu.get("name", "?") for gpu in worker["gpus"]) or "cpu"
    return tr("{name} {state} slots {busy}/{slots}  {gpus} bertd {version}  last heartbeat {heartbeat}",
              name=worker["name"].ljust(20), state=padded(tr("up") if worker["alive"] else tr("gone"), 5),
              busy=worker["busy"], slots=worker["slots"], gpus=gpus.ljust(24), version=worker["version"],
              heartbeat=worker["last_heartbeat"])


def task_line(task: dict[str, Any]) -> str:
    """'task ID STATUS: what the server said' (in Chinese: the status in words, the server's note left out)."""
    if language() == ENGLISH:
        return f"task {task['task_id']} {task['status']}: {task.get('message', '')}"
    return tr("task {task_id} {status}", task_id=task["task_id"], status=word(task["status"]))


async def watch_until_end(client: Client, task_id: str, arguments: argparse.Namespace) -> dict[str, Any]:
    interactive = sys.stdout.isatty() and not arguments.json

    def show(task: dict[str, Any]) -> None:
        if arguments.json:
            return
        line = progress_line(task)
        if interactive:
            print(f"\r{line[:150]:<150}", end="", flush=True)

    def note(line: str) -> None:
        if not arguments.json:
            print(f"\r{line:<150}" if interactive else line, flush=True)

    task = await follow(client, task_id, show, note)
    if not arguments.json:
        if interactive:
            print()
        print(describe_task(task))
    return task


def training_body(arguments: argparse.Namespace, filename: str) -> dict[str, Any]:
    hyperparameters: dict[str, Any] = {"text_column": arguments.text_column, "label_column": arguments.label_column}
    for name in ("sheet_name", "epochs", "batch_size", "learning_rate", "max_sequence_length", "random_seed"):
        value = getattr(arguments, name)
        if value is not None:
            hyperparameters[name] = value
    return {
        "model_name_cn": arguments.name_cn or Path(filename).stem,
        "model_name_en": arguments.name_en or "model",
        "training_data_file": filename,
        "base_model": arguments.base_model,
        "hyperparameters": hyperparameters,
        "callback_url": arguments.callback_url,
    }


async def run(arguments: argparse.Namespace) -> int:
    async with Client(arguments.url, arguments.token) as client:
        command = arguments.command
        if command in BASE_MODEL_COMMANDS:
            return await run_base_model_command(client, arguments)
        if command == "upload":
            uploaded = await client.upload(Path(arguments.file))
            sheets = tr("; ").join(tr("sheet {name!r}: {rows} rows, columns {columns}", name=s["name"], rows=s["rows"],
                                      columns=", ".join(s["columns"])) for s in uploaded["sheets"])
            emit(arguments, uploaded, tr("uploaded {filename} ({size} bytes): {sheets}", filename=uploaded["filename"],
                                         size=uploaded["size_bytes"], sheets=sheets))
        elif command == "train":
            uploaded = await client.upload(Path(arguments.file))
            task = await client.create_task(training_body(arguments, uploaded["filename"]))
            if not arguments.watch:
                emit(arguments, task, task_line(task))
                return 0
            if not arguments.json:
                print(tr("task {task_id} {status}", task_id=task["task_id"], status=word(task["status"])))
            final = await watch_until_end(client, task["task_id"], arguments)
            if arguments.json:
                emit(arguments, final, "")
            return 0 if final["status"] in ("completed", "paused") else 1
        elif command == "tasks":
            listing = await client.tasks(arguments.status)
            rows = [f"{t['task_id']}  {padded(word(t['status']), 9)}  {t['created_at']}  {t['model_name_en']:<20}  "
                    f"{(t.get('progress') or {}).get('progress_percentage') or 0:5.1f}%" for t in listing["tasks"]]
            emit(arguments, listing, "\n".join(rows) if rows else tr("no tasks"))
        elif command == "cluster":
            listing = await client.workers()
            rows = [worker_line(worker) for worker in listing["workers"]]
            emit(arguments, listing, "\n".join(rows) if rows else tr(
                "no workers (the server trains in its own pool, or no `bertd worker` is connected)"))
        elif command == "show":
            task = await client.task(arguments.task_id)
            emit(arguments, task, describe_task(task))
        elif command == "watch":
            final = await watch_until_end(client, arguments.task_id, arguments)
            if arguments.json:
                emit(arguments, final, "")
            return 0 if final["status"] in ("completed", "paused") else 1
        elif command in ("stop", "pause", "resume"):
            task = await getattr(client, command)(arguments.task_id)
            emit(arguments, task, task_line(task))
        elif command == "rm":
            result = await client.delete(arguments.task_id)
            emit(arguments, result, tr("task {task_id} deleted", task_id=result["task_id"]))
        elif command == "predict" and arguments.file:
            return await predict_file(client, arguments)
        elif command == "predict":
            result = await client.predict(arguments.task_id, arguments.texts, arguments.top_k)
            lines = [f"{p['label']}\t{p['score']:.4f}\t{text}" for p, text in zip(result["predictions"],
                                                                                  arguments.texts, strict=True)]
            emit(arguments, result, "\n".join(lines))
        elif command == "download":
            target_dir = Path(arguments.output)
            target_dir.mkdir(parents=True, exist_ok=True)
            path = await client.download(arguments.task_id, target_dir)
            emit(arguments, {"path": str(path)}, tr("saved {path}", path=str(path)))
    return 0


def add_client_commands(commands: argparse._SubParsersAction, environment: dict[str, str]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=environment.get("BERTD_URL", "http://localhost:8000"),
                        help=tr("bertd server (BERTD_URL, default http://localhost:8000)"))
    common.add_argument("--token", default=environment.get("API_TOKEN"), help=tr("API token (API_TOKEN)"))
    common.add_argument("--json", action="store_true", help=tr("print JSON for scripts"))

    add_base_model_commands(commands, common)
    upload = commands.add_parser("upload", parents=[common], help=tr("upload an .xlsx or .csv file"))
    upload.add_argument("file")

    train = commands.add_parser("train", parents=[common], help=tr("upload a file and train a model on it"))
    train.add_argument("file")
    train.add_argument("--text-column", required=True)
    train.add_argument("--label-column", required=True)
    train.add_argument("--sheet", dest="sheet_name")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--max-length", dest="max_sequence_length", type=int)
    train.add_argument("--seed", dest="random_seed", type=int)
    train.add_argument("--base-model", default="bert-base-chinese")
    train.add_argument("--name-cn")
    train.add_argument("--name-en")
    train.add_argument("--callback-url")
    train.add_argument("--watch", action="store_true", help=tr("show live progress until the task ends"))

    commands.add_parser("cluster", parents=[common], help=tr("list the worker boxes connected to the server"))
    tasks = commands.add_parser("tasks", parents=[common], help=tr("list tasks, newest first"))
    tasks.add_argument("--status", choices=[str(status) for status in TaskStatus])
    for name, help_text in (("show", tr("show one task")),
                            ("watch", tr("live progress until the task ends or is paused")),
                            ("stop", tr("stop a task")), ("pause", tr("checkpoint a task and free its slot")),
                            ("resume", tr("queue a paused task again, to continue from its checkpoint")),
                            ("rm", tr("stop if needed, then delete a task"))):
        command = commands.add_parser(name, parents=[common], help=help_text)
        command.add_argument("task_id")
    predict = commands.add_parser(
        "predict", parents=[common], help=tr("classify texts, or a whole .xlsx/.csv sheet (--file), with a completed "
                                             "task's model"),
        description=tr("bertd predict TASK text...: print each text's label and score. "
                       "bertd predict TASK --file x.xlsx --text-column C [-o out.xlsx]: upload the file, predict every "
                       "row on the server (a prediction job in the training pool), save the file with the prediction "
                       "columns appended."))
    predict.add_argument("task_id")
    predict.add_argument("texts", nargs="*", help=tr("texts to classify (without --file)"))
    predict.add_argument("--top-k", type=int, default=1, help=tr("ranked labels per text or row (default 1)"))
    predict.add_argument("--file", help=tr("an .xlsx or .csv file: predict every row of one sheet"))
    predict.add_argument("--text-column", help=tr("with --file: the column holding the texts"))
    predict.add_argument("--sheet", dest="sheet_name", help=tr("with --file: the sheet (default: the first)"))
    predict.add_argument("--threshold", type=float,
                         help=tr("with --file: leave a label empty when its score is below this (0-1)"))
    predict.add_argument("-o", "--output", help=tr("with --file: where to save the result, a file or a folder "
                                                   "(default: <name>-predicted.<ext> here)"))
    download = commands.add_parser("download", parents=[common], help=tr("save a completed task's model as .tar.gz"))
    download.add_argument("task_id")
    download.add_argument("-o", "--output", default=".", help=tr("folder to save into"))


def check_predict_arguments(arguments: argparse.Namespace) -> str | None:
    """What is wrong with a `predict` command line, or None."""
    if arguments.file:
        if arguments.texts:
            return tr("predict takes texts or --file, not both")
        if not arguments.text_column:
            return tr("predict --file needs --text-column, the column that holds the texts")
    elif not arguments.texts:
        return tr("predict needs texts to classify, or --file with --text-column")
    elif any(value is not None for value in (arguments.text_column, arguments.sheet_name, arguments.threshold,
                                             arguments.output)):
        return tr("--text-column, --sheet, --threshold and -o go with --file")
    return None


def run_client_command(arguments: argparse.Namespace) -> int:
    import asyncio

    if arguments.command == "predict" and (problem := check_predict_arguments(arguments)):
        print(f"bertd: {problem}", file=sys.stderr)
        return 2

    try:
        return asyncio.run(run(arguments))
    except ClientError as error:
        print(f"bertd: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"bertd: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
