"""`bertd base-models` and `bertd pull NAME`: the base models a server has, and pulling one with a
live progress bar (from the WebSocket /api/v1/ws, subscribed before the pull starts so that no
message is missed)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bertd.cli.client import Client, ClientError, download_line, format_bytes
from bertd.cli.language import language, padded, tr, word
from bertd.i18n import ENGLISH

COMMANDS = ("base-models", "pull")
ENDED = ("ready", "failed", "deleted")


def add_base_model_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    commands.add_parser("base-models", parents=[common], help=tr("list the base models the server can train from"))
    pull = commands.add_parser("pull", parents=[common],
                               help=tr("download a base model onto the server, with a progress bar"))
    pull.add_argument("name", help=tr("hub id, e.g. bert-base-chinese or google-bert/bert-base-chinese"))
    pull.add_argument("--source", choices=("huggingface", "modelscope"),
                      help=tr("hub to pull from (default: the server's BASE_MODEL_SOURCE, huggingface unless set)"))
    pull.add_argument("--revision", help=tr("branch, tag or commit (default: the hub's default branch)"))


def describe_entry(entry: dict[str, Any]) -> str:
    status = entry["status"]
    if status == "downloading":
        return download_line(entry["name"], status, entry.get("bytes_done"), entry.get("bytes_total"))
    if status == "failed":
        return f"{entry['name']}  {padded(word('failed'), 11)}  {entry.get('error_message') or ''}"
    shape = ""
    if entry.get("hidden_size") and entry.get("num_layers"):
        shape = tr("  hidden {hidden} x {layers} layers, vocab {vocab}", hidden=entry["hidden_size"],
                   layers=entry["num_layers"], vocab=entry.get("vocab_size") or "?")
    parameters = tr("  {millions:.1f}M parameters", millions=entry["parameters"] / 1e6) if entry.get("parameters") else ""
    return (f"{entry['name']}  {word('ready')}  {entry['source']}  {format_bytes(entry.get('size_bytes'))}{parameters}"
            f"{shape}  {entry['path']}")


async def run_base_model_command(client: Client, arguments: argparse.Namespace) -> int:
    if arguments.command == "base-models":
        listing = await client.base_models()
        lines = [describe_entry(entry) for entry in listing["base_models"]]
        print(json.dumps(listing, ensure_ascii=False, indent=2) if arguments.json else
              "\n".join(lines) if lines else tr("no base models yet; add one with: bertd pull bert-base-chinese"))
        return 0
    return await pull(client, arguments)


async def pull(client: Client, arguments: argparse.Namespace) -> int:
    name = arguments.name
    interactive = sys.stdout.isatty() and not arguments.json
    stream = client.everything()
    try:
        snapshot = await anext(stream)
        try:
            entry = await client.pull(name, arguments.source, arguments.revision)
        except ClientError as error:
            if error.status != 409:
                raise
            # Already downloading (started by someone else, or by a task): follow that download.
            entry = next((e for e in snapshot.get("base_models", []) if e["name"] == name),
                         {"name": name, "status": "downloading", "message": str(error)})
        if not arguments.json:
            print(entry.get("message") if entry.get("message") and language() == ENGLISH
                  else tr("{name} {status}", name=name, status=word(entry["status"])))
        if entry["status"] == "downloading":
            entry = await follow(stream, name, interactive, arguments.json)
    finally:
        await stream.aclose()
    if arguments.json:
        print(json.dumps(entry, ensure_ascii=False, indent=2))
    elif entry["status"] == "ready":
        print(describe_entry(entry))
    elif entry["status"] == "failed":
        error = entry.get("error") or {}
        print(tr("failed: {message}", message=error.get("message") or entry.get("error_message")))
        if error.get("hint"):
            print(tr("what to do: {hint}", hint=error["hint"]))
    else:
        print(tr("{name} was deleted while it downloaded", name=name))
    return 0 if entry["status"] == "ready" else 1


async def follow(stream: Any, name: str, interactive: bool, quiet: bool) -> dict[str, Any]:
    """The model's base_model messages until it is ready, failed or deleted; a bar meanwhile."""
    last_tenth = -1
    async for message in stream:
        if message.get("type") != "base_model" or message.get("name") != name:
            continue
        if message["status"] in ENDED:
            if interactive:
                print()
            return message
        if quiet:
            continue
        line = download_line(name, message["status"], message.get("bytes_done"), message.get("bytes_total"))
        if interactive:
            print(f"\r{line[:150]:<150}", end="", flush=True)
        elif message.get("bytes_total"):
            tenth = int(10 * (message.get("bytes_done") or 0) / message["bytes_total"])
            if tenth > last_tenth:  # a log, not a terminal: a line every tenth
                last_tenth = tenth
                print(line, flush=True)
    raise ClientError(tr("the server closed the stream before {name} was downloaded", name=name))
