"""Requests written for the original system, through the real server: train_val_split 0, lora null,
a numeric lora_alpha, a string target_modules, files copied into the uploads folder by hand, and
every task's updated_at."""

from __future__ import annotations

import shutil
from pathlib import Path

from datagen import labelled_frame, write_csv, write_xlsx
from helpers import TASKS, create, events, get_task, task_body, upload, wait_for


async def test_train_val_split_zero_trains_on_every_row(make_client, csv_file: Path, tmp_path: Path) -> None:
    client = await make_client()
    validation = write_csv(tmp_path / "验证.csv", labelled_frame(rows_per_label=4, seed=9))
    for path in (csv_file, validation):
        assert (await upload(client, path)).status == 201

    everything = await create(client, task_body(csv_file.name, sheet_name=None, epochs=2, train_val_split=0))
    assert everything["hyperparameters"]["train_val_split"] == 0
    done = await wait_for(client, everything["task_id"], {"completed", "failed"}, timeout=120)
    assert done["status"] == "completed", done["error_message"]
    metrics = done["metrics"]
    assert (metrics["train_rows"], metrics["validation_rows"], metrics["model_selection"]) == (48, 0, "last_epoch")
    assert (metrics["best_epoch"], metrics["val_accuracy"], metrics["val_macro_f1"]) == (2, None, None)
    assert done["progress"]["val_accuracy"] is None and done["progress"]["train_loss"] is not None
    warnings = [e["data"]["message"] for e in await events(client, everything["task_id"]) if e["type"] == "warning"]
    assert any("training on all 48 rows without validation metrics; the last epoch is saved" in w for w in warnings)

    # With a validation file the metrics come from it, as before; the split is not used.
    validated = await create(client, {**task_body(csv_file.name, sheet_name=None, epochs=1, train_val_split=0),
                                      "validation_data_file": validation.name})
    done = await wait_for(client, validated["task_id"], {"completed", "failed"}, timeout=120)
    assert done["status"] == "completed", done["error_message"]
    metrics = done["metrics"]
    assert (metrics["train_rows"], metrics["validation_rows"]) == (48, 12)
    assert metrics["model_selection"] == "best_validation_macro_f1" and metrics["val_accuracy"] is not None


async def test_what_needs_validation_is_refused_without_any(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady")
    assert (await upload(client, csv_file)).status == 201
    for name, value in (("early_stopping_enabled", True), ("evaluation_steps", 5)):
        body = task_body(csv_file.name, sheet_name=None, train_val_split=0, **{name: value})
        response = await client.post(TASKS, json=body)
        error = (await response.json())["error"]
        assert response.status == 400 and error["details"] == {"field": f"hyperparameters.{name}"}
        assert "train_val_split is 0 and there is no validation_data_file" in error["message"]
    negative = await client.post(TASKS, json=task_body(csv_file.name, sheet_name=None, train_val_split=-0.1))
    assert negative.status == 400
    assert (await (await client.get(TASKS)).json())["total"] == 0


async def test_lora_as_the_original_clients_send_it(make_client, csv_file: Path) -> None:
    client = await make_client()
    assert (await upload(client, csv_file)).status == 201
    off = await create(client, task_body(csv_file.name, sheet_name=None, lora=None, random_seed=3, epochs=1))
    assert off["hyperparameters"]["lora"] == {"enabled": False, "r": 8, "lora_alpha": 16, "lora_dropout": 0.1,
                                              "target_modules": ["query", "value"]}
    assert off["hyperparameters"]["learning_rate"] == 3e-3  # given, so kept
    lora = {"enabled": True, "r": 4, "lora_alpha": 12.5, "target_modules": "all-linear"}
    adapted = await create(client, task_body(csv_file.name, sheet_name=None, lora=lora, epochs=1))
    assert adapted["hyperparameters"]["lora"] == {**lora, "lora_dropout": 0.1}
    whole = await create(client, task_body(csv_file.name, sheet_name=None, lora={"enabled": True, "lora_alpha": 32},
                                           epochs=1))
    assert whole["hyperparameters"]["lora"]["lora_alpha"] == 32  # 32 in, 32 out (not 32.0)

    for task in (off, adapted):
        done = await wait_for(client, task["task_id"], {"completed", "failed"}, timeout=120)
        assert done["status"] == "completed", done["error_message"]
    metrics = (await get_task(client, adapted["task_id"]))["metrics"]
    assert metrics["lora"] is True and 0 < metrics["trainable_parameters"] < metrics["total_parameters"]
    assert (await get_task(client, off["task_id"]))["metrics"]["lora"] is False
    await client.post(f"{TASKS}/{whole['task_id']}/stop")


async def test_files_copied_into_the_uploads_folder_are_registered(make_client, tmp_path: Path, csv_file: Path,
                                                                   xlsx_file: Path) -> None:
    uploads = tmp_path / "data" / "uploads"
    uploads.mkdir(parents=True)
    shutil.copy(xlsx_file, uploads / xlsx_file.name)
    (uploads / ".upload-leftover.csv").write_text("a,b\n1,2\n", encoding="utf-8")  # a crashed upload's temporary
    client = await make_client(training_function="standin:steady")

    listed = {f["filename"]: f for f in (await (await client.get("/api/v1/files")).json())["files"]}
    assert list(listed) == [xlsx_file.name]
    import hashlib

    registered = listed[xlsx_file.name]
    assert registered["sha256"] == hashlib.sha256(xlsx_file.read_bytes()).hexdigest()
    assert registered["size_bytes"] == xlsx_file.stat().st_size
    assert [(s["name"], s["rows"], s["columns"]) for s in registered["sheets"]] == [
        ("data", 90, ["编号", "内容", "标签"]), ("notes", 9, ["编号"])]
    task = await create(client, task_body(xlsx_file.name))  # named without an upload call
    assert task["training_data_file"] == xlsx_file.name

    # While it runs: a CSV and a broken workbook copied in, a note, then a rescan.
    shutil.copy(csv_file, uploads / csv_file.name)
    (uploads / "坏的.xlsx").write_bytes(b"not a workbook")
    (uploads / "说明.txt").write_text("notes", encoding="utf-8")
    write_xlsx(uploads / "第二批.xlsx", {"Sheet1": labelled_frame(rows_per_label=2, seed=4)})
    response = await client.post("/api/v1/files/rescan")
    result = await response.json()
    assert response.status == 200
    assert sorted(f["filename"] for f in result["added"]) == sorted([csv_file.name, "第二批.xlsx"])
    assert result["skipped"] == [
        {"filename": "坏的.xlsx", "reason": "坏的.xlsx is not a readable .xlsx workbook (not a zip archive)"},
        {"filename": "说明.txt", "reason": "not a .xlsx or .csv file"}]
    assert result["missing"] == []
    again = await (await client.post("/api/v1/files/rescan")).json()
    assert again["added"] == [] and [s["filename"] for s in again["skipped"]] == ["坏的.xlsx", "说明.txt"]

    (uploads / "第二批.xlsx").unlink()
    gone = await (await client.post("/api/v1/files/rescan")).json()
    assert gone["missing"] == ["第二批.xlsx"]
    await wait_for(client, task["task_id"], {"completed"}, timeout=60)


async def test_every_task_has_updated_at(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady")
    assert (await upload(client, csv_file)).status == 201
    task = await create(client, task_body(csv_file.name, sheet_name=None, random_seed=5))
    assert task["updated_at"] is not None and task["updated_at"] >= task["created_at"]
    done = await wait_for(client, task["task_id"], {"completed"}, timeout=60)
    assert done["updated_at"] >= done["finished_at"] >= done["created_at"]
    listed = (await (await client.get(TASKS)).json())["tasks"][0]
    assert listed["updated_at"] == done["updated_at"]
