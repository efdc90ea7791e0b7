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
    unseen_labels = await create(client, {**task_body(train.name, epochs=1, sheet_name=None),
                                          "validation_data_file": unseen.name})
    bad_lora = await create(client, task_body(train.name, epochs=1, sheet_name=None,
                                              lora={"enabled": True, "target_modules": ["q_proj"]}))

    failed = await wait_for(client, single["task_id"], {"failed", "completed"}, timeout=60)
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "single_label",
        "message": "label column '标签' in sheet 'data' of one_label.xlsx has only one label ('扬尘')",
        "hint": "a classifier needs at least 2: add rows of another label, or check that label_column is the right "
                "column"}
    assert failed["error_message"] == f"{failed['error']['message']}; {failed['error']['hint']}"
    assert failed["finished_at"] is not None and failed["artifacts"] is None
    assert failed["updated_at"] >= failed["finished_at"]

    failed = await wait_for(client, unseen_labels["task_id"], {"failed", "completed"}, timeout=60)
    assert failed["status"] == "failed"
    assert "never occur in the training data: 工业废气" in failed["error_message"]
    assert failed["error"]["code"] == "unseen_labels"

    failed = await wait_for(client, bad_lora["task_id"], {"failed", "completed"}, timeout=60)
    assert failed["status"] == "failed"
    message = failed["error_message"]
    assert message.startswith("hyperparameters.lora.target_modules ['q_proj'] do not match the base model's layers")
    assert "its linear layers are named: " in message and "query" in message and "value" in message
    assert failed["error"]["code"] == "lora_target_modules" and failed["error"]["hint"].endswith('use "all-linear"')

    history = [e["data"] for e in await events(client, single["task_id"]) if e["type"] == "status"]
    assert [data["status"] for data in history] == ["queued", "training", "failed"]
    assert history[-1]["error_message"].startswith("label column '标签' in sheet 'data' of one_label.xlsx")
    assert history[-1]["error"]["code"] == "single_label"
    health = await (await client.get("/api/v1/health")).json()
    assert health["status"] == "ok" and health["training"] == 0


def test_a_base_model_that_is_not_here_says_how_to_add_it(tmp_path: Path) -> None:
    """The worker's own check (reached when a model vanished after the task was accepted)."""
    import pytest

    from bertd.protocol import TrainingInputError
    from bertd.training.base_model import resolve_base_model

    with pytest.raises(TrainingInputError) as caught:
        resolve_base_model("no-such-model", tmp_path)
    error = caught.value.task_error
    assert error.code == "base_model_missing"
    assert error.message == (f"base model 'no-such-model' is not on this server (not in {tmp_path / 'no-such-model'}, "
                             "nor in the Hugging Face cache)")
    for advice in ("bertd pull no-such-model", "POST /api/v1/base-models", "HF_ENDPOINT=https://hf-mirror.com",
                   '"source": "modelscope"', "BASE_MODELS_DIR/no-such-model"):
        assert advice in error.hint
