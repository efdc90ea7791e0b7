"""The whole flow with real training: upload, create, watch, completed, a model pipeline() loads."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from bertd.server.keys import CONFIG

from datagen import LABEL_WORDS
from helpers import TASKS, create, events, task_body, upload, wait_for


async def test_full_flow_trains_a_model_that_pipeline_loads(make_client, xlsx_file: Path, tmp_path: Path) -> None:
    client = await make_client()
    uploaded = await upload(client, xlsx_file)
    assert uploaded.status == 201, await uploaded.text()

    # Ten epochs: enough for the tiny model to learn all three labels whatever the random draw
    # (with six, some seeds left one label unlearned).
    created = await create(client, task_body(xlsx_file.name, epochs=10))
    assert created["status"] == "queued" and created["queue_position"] == 1  # as stored; it starts after
    assert created["hyperparameters"]["random_seed"] == 42  # defaults are filled in
    task_id = created["task_id"]

    seen_training = await wait_for(client, task_id, {"training", "completed"})
    task = await wait_for(client, task_id, {"completed", "failed"}, timeout=120)
    assert task["status"] == "completed", task["error_message"]
    assert seen_training["started_at"] is not None

    progress = task["progress"]
    assert progress["phase"] == "completed"
    assert progress["current_epoch"] == 10 and progress["progress_percentage"] == 100.0
    assert progress["step"] == progress["total_steps"] > 0
    assert progress["samples_per_second"] > 0

    metrics = task["metrics"]
    assert metrics["val_accuracy"] >= 0.8, metrics
    assert set(metrics["per_class"]) == set(LABEL_WORDS)
    assert len(metrics["history"]) == 10
    assert 1 <= metrics["best_epoch"] <= 10
    # 88 rows after dropping 2 empty texts; 20% of each label held out.
    assert metrics["train_rows"] + metrics["validation_rows"] == 88
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["validation_rows"]

    model_dir = Path(task["artifacts"]["model_path"])
    assert model_dir == Path(client.app[CONFIG].data_dir) / "models" / task_id
    assert (model_dir / "model.safetensors").is_file()
    labels = json.loads((model_dir / "labels.json").read_text(encoding="utf-8"))
    assert labels["labels"] == sorted(LABEL_WORDS)
    saved_metrics = json.loads(Path(task["artifacts"]["metrics_path"]).read_text(encoding="utf-8"))
    assert saved_metrics["best_epoch"] == metrics["best_epoch"]

    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(model_dir), device="cpu")
    predictions = classifier(["工厂烟囱排放化工废气，居民反映严重。", "工地渣土施工尘土飞扬。", "饭店厨房油烟烧烤排烟。"])
    assert [p["label"] for p in predictions] == ["工业废气", "扬尘", "油烟"]

    history = await events(client, task_id)
    types = [event["type"] for event in history]
    assert [e["data"]["status"] for e in history if e["type"] == "status"] == ["queued", "training", "completed"]
    assert types.count("epoch") == 10
    warnings = [e["data"]["message"] for e in history if e["type"] == "warning"]
    assert any("dropped 2 row(s) with an empty text" in message for message in warnings), warnings
    assert [e["id"] for e in history] == sorted(e["id"] for e in history)


    # ---- using the model through the API -------------------------------------------------
    response = await client.post(f"{TASKS}/{task_id}/predict",
                                 json={"texts": ["工厂烟囱排放化工废气。", "饭店厨房油烟烧烤排烟。"], "top_k": 2})
    body = await response.json()
    assert response.status == 200, body
    first, second = body["predictions"]
    assert (first["label"], second["label"]) == ("工业废气", "油烟")
    assert set(first["scores"]) == set(LABEL_WORDS) and abs(sum(first["scores"].values()) - 1) < 1e-4
    assert [entry["label"] for entry in first["top_k"]][0] == "工业废气" and len(first["top_k"]) == 2
    for bad in ({"texts": []}, {"texts": [""]}, {"texts": "one"}, {"texts": ["a"], "top_k": 0}, {"text": ["a"]}):
        assert (await client.post(f"{TASKS}/{task_id}/predict", json=bad)).status == 400, bad

    download = await client.get(f"{TASKS}/{task_id}/download")
    assert download.status == 200 and download.content_type == "application/gzip"
    assert f'filename="air-pollution-{task_id[:8]}.tar.gz"' in download.headers["Content-Disposition"]
    archive_path = tmp_path / "model.tar.gz"
    archive_path.write_bytes(await download.read())
    with tarfile.open(archive_path) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked" / f"air-pollution-{task_id[:8]}"
    assert (unpacked / "labels.json").is_file() and (unpacked / "metrics.json").is_file()
    unpacked_classifier = pipeline("text-classification", model=str(unpacked), device="cpu")
    assert unpacked_classifier("工地渣土施工尘土飞扬。")[0]["label"] == "扬尘"

    assert (await client.delete(f"{TASKS}/{task_id}")).status == 200
    assert not model_dir.exists() and not (model_dir.parent / f"{task_id}.tar.gz").exists()


async def test_lora_trains_adapters_and_saves_a_plain_merged_model(make_client, xlsx_file: Path,
                                                                   base_models_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import pipeline

    client = await make_client()
    assert (await upload(client, xlsx_file)).status == 201
    # A tiny random base model needs a far larger LoRA learning rate than a pretrained one.
    lora = {"enabled": True, "r": 8, "lora_alpha": 16, "target_modules": ["query", "value"]}
    created = await create(client, task_body(xlsx_file.name, epochs=10, learning_rate=3e-2, lora=lora))
    task = await wait_for(client, created["task_id"], {"completed", "failed"}, timeout=120)
    assert task["status"] == "completed", task["error_message"]
    assert task["hyperparameters"]["lora"]["lora_dropout"] == 0.1  # defaults filled in around the given ones

    model_dir = Path(task["artifacts"]["model_path"])
    saved_metrics = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
    assert saved_metrics["lora"] is True
    assert saved_metrics["trainable_parameters"] < saved_metrics["total_parameters"] / 10
    assert task["metrics"]["val_accuracy"] >= 0.8, task["metrics"]

    # Merged: no adapter files and no lora_ weights, so pipeline() needs no peft.
    assert not (model_dir / "adapter_config.json").exists()
    saved = load_file(model_dir / "model.safetensors")
    base = load_file(base_models_dir / "tiny-bert" / "model.safetensors")
    assert not [name for name in saved if "lora_" in name or "modules_to_save" in name]
    # Layers without adapters are the base model's (a bare BertModel), bit for bit; adapted ones moved.
    for frozen in ("encoder.layer.0.intermediate.dense.weight", "encoder.layer.1.attention.self.key.weight",
                   "pooler.dense.weight", "embeddings.word_embeddings.weight"):
        assert torch.equal(saved[f"bert.{frozen}"], base[frozen]), frozen
    for adapted in ("encoder.layer.0.attention.self.query.weight", "encoder.layer.1.attention.self.value.weight"):
        assert not torch.equal(saved[f"bert.{adapted}"], base[adapted]), adapted

    classifier = pipeline("text-classification", model=str(model_dir), device="cpu")
    predictions = classifier(["工厂烟囱排放化工废气，居民反映严重。", "工地渣土施工尘土飞扬。", "饭店厨房油烟烧烤排烟。"])
    assert [p["label"] for p in predictions] == ["工业废气", "扬尘", "油烟"]
