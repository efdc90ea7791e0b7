"""`bertd predict TASK --file x.xlsx --text-column C [-o out.xlsx]`: upload the sheet, run a
prediction job on the server, show its progress, save the result."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from bertd.cli.client import Client, ClientError, format_seconds
from bertd.cli.language import padded, tr, word


def progress_line(job: dict[str, Any], width: int = 24) -> str:
    """One line: status, phase, a bar, rows done, rows per second, ETA."""
    percentage = job.get("progress") or 0.0
    filled = int(width * percentage / 100)
    parts = [padded(word(job.get("status")), 9), padded(word(job.get("phase") or ""), 13),
             f"[{'#' * filled}{'-' * (width - filled)}] {percentage:5.1f}%"]
    if job.get("rows_total"):
        parts.append(tr("{done:,}/{total:,} rows", done=job.get("rows_done") or 0, total=job["rows_total"]))
    if job.get("rows_per_second"):
        parts.append(tr("{rate:,.0f} rows/s", rate=job["rows_per_second"]))
    if job.get("eta_seconds") is not None and job.get("status") == "running":
        parts.append(tr("ETA {eta}", eta=format_seconds(job["eta_seconds"])))
    if job.get("status") == "queued" and job.get("queue_position"):
        parts.append(tr("queue position {position}", position=job["queue_position"]))
    return "  ".join(parts)


async def upload_for_prediction(client: Client, path: Path) -> dict[str, Any]:
    """The upload: the same bytes under the same name answer 200; when another file already has the
    name (last month's sheet, say), this one goes up as <stem>-<sha256 prefix><suffix>."""
    try:
        return await client.upload(path)
    except ClientError as error:
        if error.status != 409:
            raise
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    return await client.upload(path, f"{path.stem}-{digest}{path.suffix}")


async def follow_job(client: Client, task_id: str, job: dict[str, Any], show: Any) -> dict[str, Any]:
    """Apply the job's stream to a local copy of it; the job once it has ended."""
    async for message in client.watch_prediction(task_id, job["prediction_id"]):
        kind = message["type"]
        if kind in ("prediction_snapshot", "prediction_end"):
            job = message["prediction"]
        elif kind == "prediction_progress":
            job = {**job, **{k: v for k, v in message.items() if k not in ("type", "seq", "at")}}
        elif kind == "prediction_status":
            job = {**job, "status": message["status"]}
        show(job)
    return job


def summary(job: dict[str, Any], saved: Path) -> str:
    counts = ", ".join(f"{label} {count:,}" for label, count in (job.get("label_counts") or {}).items())
    lines = [tr("saved {path}: {rows:,} rows in {seconds:.1f} s ({rate:,.0f} rows/s predicting), {empty:,} with an "
                "empty text", path=str(saved), rows=job["rows_total"], seconds=job["seconds"],
                rate=job.get("rows_per_second") or 0, empty=job["rows_empty"]),
             tr("  labels: {counts}", counts=counts)]
    if job.get("threshold") is not None:
        lines.append(tr("  below the threshold {threshold:g} (no label): {rows:,}", threshold=job["threshold"],
                        rows=job["rows_below_threshold"]))
    lines.append(tr("  columns added: {columns}", columns=", ".join(job.get("output_columns") or [])))
    return "\n".join(lines)


async def predict_file(client: Client, arguments: argparse.Namespace) -> int:
    path = Path(arguments.file)
    uploaded = await upload_for_prediction(client, path)
    body = {"file": uploaded["filename"], "sheet_name": arguments.sheet_name, "text_column": arguments.text_column,
            "top_k": arguments.top_k, "threshold": arguments.threshold}
    job = await client.create_prediction(arguments.task_id, body)
    interactive = sys.stdout.isatty() and not arguments.json
    if not arguments.json:
        print(tr("prediction job {prediction_id} {status}: {filename}, sheet {sheet!r}, column {column!r}",
                 prediction_id=job["prediction_id"], status=word(job["status"]), filename=uploaded["filename"],
                 sheet=job["sheet_name"], column=job["text_column"]), flush=True)

    def show(current: dict[str, Any]) -> None:
        if interactive:
            print(f"\r{progress_line(current)[:150]:<150}", end="", flush=True)

    job = await follow_job(client, arguments.task_id, job, show)
    if interactive:
        print()
    if job["status"] != "completed":
        ended = tr("prediction job {prediction_id} {status}", prediction_id=job["prediction_id"],
                   status=word(job["status"]))
        raise ClientError(tr("{what}: {message}", what=ended, message=job["error_message"])
                          if job.get("error_message") else ended)
    target = Path(arguments.output) if arguments.output else Path.cwd()
    saved = await client.download_prediction(arguments.task_id, job["prediction_id"], target)
    if arguments.json:
        print(json.dumps({**job, "path": str(saved)}, ensure_ascii=False, indent=2))
    else:
        print(summary(job, saved))
    return 0
