"""Data and model problems found by a real worker end the task as failed with a usable message."""

from __future__ import annotations

from pathlib import Path

from datagen import labelled_frame, write_csv, write_xlsx
from helpers import create, events, task_body, upload, wait_for


async def test_data_problems_fail_the_task_with_a_message_naming_them(make_client, tmp_path: Path) -> None:
    client = await make_client(max_concurrent_tasks=3)
    one_label = write_xlsx(tmp_path / "one_label.xlsx", {"data": labelled_frame(rows_per_label=10, labels=["扬尘"])})
    train = write_csv(tmp_path / "train.csv", labelled_frame(rows_per_label=10, labels=["扬尘", "油烟"]))
    unseen = write_csv(tmp_path / "val.csv", labelled_frame(rows_per_label=3, labels=["扬尘", "工业废气"]))
    for path in (one_label, train, unseen):
        assert (await upload(client, path)).status == 201

    single = await create(client, task_body(one_label.name, epochs=1))
    missing_model = await create(client, {**task_body(train.name, epochs=1, sheet_name=None),
                                          "base_model": "no-such-model"})
    unseen_labels = await create(client, {**task_body(train.name, epochs=1, sheet_name=None),
                                          "validation_data_file": unseen.name})
    bad_lora = await create(client, task_body(train.name, epochs=1, sheet_name=None,
                                              lora={"enabled": True, "target_modules": ["q_proj"]}))

    failed = await wait_for(client, single["task_id"], {"failed", "completed"}, timeout=60)
    assert failed["status"] == "failed"
    assert failed["error_message"] == (
        "label column '标签' in sheet 'data' of one_label.xlsx has only one label ('扬尘'); "
        "a classifier needs at least 2")
    assert failed["finished_at"] is not None and failed["artifacts"] is None

    failed = await wait_for(client, missing_model["task_id"], {"failed", "completed"}, timeout=60)
    assert failed["status"] == "failed"
    message = failed["error_message"]
    assert "base model 'no-such-model' not found" in message
    assert "no-such-model/config.json" in message and "Hugging Face cache" in message
    assert "\n" not in message

    failed = await wait_for(client, unseen_labels["task_id"], {"failed", "completed"}, timeout=60)
    assert failed["status"] == "failed"
    assert "never occur in the training data: 工业废气" in failed["error_message"]

    failed = await wait_for(client, bad_lora["task_id"], {"failed", "completed"}, timeout=60)
    assert failed["status"] == "failed"
    message = failed["error_message"]
    assert message.startswith("hyperparameters.lora.target_modules ['q_proj'] do not match the base model's layers")
    assert "its linear layers are named: " in message and "query" in message and "value" in message

    history = [e["data"] for e in await events(client, single["task_id"]) if e["type"] == "status"]
    assert [data["status"] for data in history] == ["queued", "training", "failed"]
    assert history[-1]["error_message"].startswith("label column '标签' in sheet 'data' of one_label.xlsx")
    health = await (await client.get("/api/v1/health")).json()
    assert health["status"] == "ok" and health["training"] == 0
