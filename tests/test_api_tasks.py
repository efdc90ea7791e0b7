"""Task request validation, listing, pagination and events through the real server."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from helpers import TASKS, create, events, task_body, upload, wait_for


def with_change(path: str, value: Any) -> dict[str, Any]:
    """A valid body for 环境保护_测试数据.xlsx with one field set (or removed, for value=...)."""
    body = copy.deepcopy(task_body("环境保护_测试数据.xlsx"))
    *parents, last = path.split(".")
    target = body
    for key in parents:
        target = target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return body


INVALID_BODIES = [
    ("unknown top-level field", with_change("colour", "red"), "colour"),
    ("unknown hyperparameter", with_change("hyperparameters.epoch", 3), "hyperparameters.epoch"),
    ("missing model_name_cn", with_change("model_name_cn", ...), "model_name_cn"),
    ("missing training_data_file", with_change("training_data_file", ...), "training_data_file"),
    ("epochs as a string", with_change("hyperparameters.epochs", "3"), "hyperparameters.epochs"),
    ("epochs as a float", with_change("hyperparameters.epochs", 2.5), "hyperparameters.epochs"),
    ("epochs as a boolean", with_change("hyperparameters.epochs", True), "hyperparameters.epochs"),
    ("epochs zero", with_change("hyperparameters.epochs", 0), "hyperparameters.epochs"),
    ("learning_rate zero", with_change("hyperparameters.learning_rate", 0), "hyperparameters.learning_rate"),
    ("batch_size too big", with_change("hyperparameters.batch_size", 10**6), "hyperparameters.batch_size"),
    ("split too big", with_change("hyperparameters.train_val_split", 0.8), "hyperparameters.train_val_split"),
    ("precision unknown", with_change("hyperparameters.precision", "fp8"), "hyperparameters.precision"),
    ("metric unknown", with_change("hyperparameters.early_stopping_metric", "loss"),
     "hyperparameters.early_stopping_metric"),
    ("hyperparameters not an object", with_change("hyperparameters", [1]), "hyperparameters"),
    ("model_name_en with spaces", with_change("model_name_en", "air pollution"), "model_name_en"),
    ("base_model escaping", with_change("base_model", "../etc"), "base_model"),
    ("base_model absolute", with_change("base_model", "/models/x"), "base_model"),
    ("callback_url not http", with_change("callback_url", "ftp://x/y"), "callback_url"),
    ("file not uploaded", with_change("training_data_file", "nope.xlsx"), "training_data_file"),
    ("sheet missing", with_change("hyperparameters.sheet_name", "Sheet9"), "hyperparameters.sheet_name"),
    ("text column missing", with_change("hyperparameters.text_column", "内容合并"), "hyperparameters.text_column"),
    ("label column missing", with_change("hyperparameters.label_column", "标签列"), "hyperparameters.label_column"),
    ("same text and label column", with_change("hyperparameters.label_column", "内容"),
     "hyperparameters.label_column"),
    ("validation file not uploaded", with_change("validation_data_file", "val.xlsx"), "validation_data_file"),
    ("validation sheet without file", with_change("hyperparameters.validation_sheet_name", "data"),
     "hyperparameters.validation_sheet_name"),
    ("lora nested unknown", with_change("hyperparameters.lora", {"rank": 4}), "hyperparameters.lora.rank"),
    ("lora no target modules", with_change("hyperparameters.lora", {"enabled": True, "target_modules": []}),
     "hyperparameters.lora.target_modules"),
    ("lora empty target module", with_change("hyperparameters.lora", {"target_modules": ["query", ""]}),
     "hyperparameters.lora.target_modules[1]"),
    ("lora rank zero", with_change("hyperparameters.lora", {"r": 0}), "hyperparameters.lora.r"),
]


@pytest.fixture
async def client_with_file(make_client, xlsx_file: Path, default_base_models_dir: Path):
    client = await make_client(training_function="standin:steady", base_models_dir=default_base_models_dir)
    assert (await upload(client, xlsx_file)).status == 201
    return client


@pytest.mark.parametrize(("case", "body", "field"), INVALID_BODIES, ids=[case for case, _, _ in INVALID_BODIES])
async def test_invalid_task_requests_are_rejected_and_create_nothing(client_with_file, case, body, field) -> None:
    response = await client_with_file.post(TASKS, json=body)
    payload = await response.json()
    assert response.status == 400, payload
    error = payload["error"]
    assert error["code"] == "validation_error"
    assert field in error["message"], error["message"]
    assert set(payload) == {"error"} and set(error) == {"code", "message", "details"}
    listing = await (await client_with_file.get(TASKS)).json()
    assert listing["total"] == 0


async def test_column_errors_list_the_columns_there_are(client_with_file) -> None:
    response = await client_with_file.post(TASKS, json=with_change("hyperparameters.label_column", "标签列"))
    message = (await response.json())["error"]["message"]
    assert "column '标签列' not found in sheet 'data'" in message and "columns are: 编号, 内容, 标签" in message


async def test_malformed_requests(client_with_file) -> None:
    bad_json = await client_with_file.post(TASKS, data="{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status == 400 and (await bad_json.json())["error"]["code"] == "invalid_json"
    not_json = await client_with_file.post(TASKS, data="a=b", headers={"Content-Type": "text/plain"})
    assert not_json.status == 415 and (await not_json.json())["error"]["code"] == "unsupported_media_type"
    nan = await client_with_file.post(TASKS, data='{"model_name_cn": NaN}',
                                      headers={"Content-Type": "application/json"})
    assert nan.status == 400
    array = await client_with_file.post(TASKS, json=[1, 2])
    assert array.status == 400 and (await array.json())["error"]["code"] == "validation_error"
    assert (await (await client_with_file.get(TASKS)).json())["total"] == 0


async def test_unknown_routes_and_methods_use_the_error_body(client_with_file) -> None:
    missing = await client_with_file.get("/api/v1/nothing")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    method = await client_with_file.put(TASKS)
    assert method.status == 405 and (await method.json())["error"]["code"] == "method_not_allowed"
    task = await client_with_file.get(f"{TASKS}/does-not-exist")
    assert task.status == 404 and "does-not-exist" in (await task.json())["error"]["message"]


async def test_defaults_are_filled_in_and_echoed(client_with_file) -> None:
    body = {"model_name_cn": "模型", "model_name_en": "m", "training_data_file": "环境保护_测试数据.xlsx",
            "hyperparameters": {"text_column": "内容", "label_column": "标签"}}
    task = await create(client_with_file, body)
    hp = task["hyperparameters"]
    assert hp["epochs"] == 3 and hp["batch_size"] == 16 and hp["learning_rate"] == 2e-5
    assert hp["max_sequence_length"] == 256 and hp["train_val_split"] == 0.2 and hp["sheet_name"] is None
    assert hp["lora"] == {"enabled": False, "r": 8, "lora_alpha": 16, "lora_dropout": 0.1,
                          "target_modules": ["query", "value"]}
    assert task["base_model"] == "bert-base-chinese" and task["callback_url"] is None
    assert task["message"]


async def test_lora_takes_a_larger_default_learning_rate(client_with_file) -> None:
    body = {"model_name_cn": "模型", "model_name_en": "m", "training_data_file": "环境保护_测试数据.xlsx",
            "hyperparameters": {"text_column": "内容", "label_column": "标签", "lora": {"enabled": True}}}
    assert (await create(client_with_file, body))["hyperparameters"]["learning_rate"] == 2e-4
    body["hyperparameters"]["learning_rate"] = 5e-5  # one the user gives is kept
    assert (await create(client_with_file, body))["hyperparameters"]["learning_rate"] == 5e-5
    schema = await (await client_with_file.get("/api/v1/openapi.json")).json()
    learning_rate = schema["components"]["schemas"]["TaskRequest"]["properties"]["hyperparameters"]["properties"][
        "learning_rate"]
    assert "lora.enabled" in learning_rate["description"] and learning_rate["default"] == 2e-5


async def test_list_filters_by_status_and_pages(client_with_file) -> None:
    body = task_body("环境保护_测试数据.xlsx", random_seed=5, epochs=1)
    ids = [(await create(client_with_file, body))["task_id"] for _ in range(5)]
    for task_id in ids:
        await wait_for(client_with_file, task_id, {"completed"}, timeout=30)
    page1 = await (await client_with_file.get(TASKS, params={"page": 1, "page_size": 2})).json()
    page3 = await (await client_with_file.get(TASKS, params={"page": 3, "page_size": 2})).json()
    assert page1["total"] == 5 and [t["task_id"] for t in page1["tasks"]] == ids[::-1][:2]
    assert [t["task_id"] for t in page3["tasks"]] == [ids[0]]
    completed = await (await client_with_file.get(TASKS, params={"status": "completed"})).json()
    assert completed["total"] == 5
    failed = await (await client_with_file.get(TASKS, params={"status": "failed"})).json()
    assert failed["total"] == 0 and failed["tasks"] == []
    for params in ({"status": "running"}, {"page": "0"}, {"page_size": "1000"}, {"page": "x"}, {"sort": "asc"}):
        response = await client_with_file.get(TASKS, params=params)
        assert response.status == 400, params
        assert next(iter(params)) in (await response.json())["error"]["message"]


async def test_events_page_with_after_and_limit(client_with_file) -> None:
    task_id = (await create(client_with_file, task_body("环境保护_测试数据.xlsx", random_seed=5)))["task_id"]
    await wait_for(client_with_file, task_id, {"completed"}, timeout=30)
    everything = await events(client_with_file, task_id)
    assert len(everything) >= 4
    url = f"{TASKS}/{task_id}/events"
    first = (await (await client_with_file.get(url, params={"limit": 2})).json())["events"]
    rest = (await (await client_with_file.get(url, params={"after": first[-1]["id"]})).json())["events"]
    assert first + rest == everything
    assert {"id", "at", "type", "data"} == set(everything[0])
    assert (await client_with_file.get(url, params={"limit": 0})).status == 400


async def test_predict_and_download_need_a_completed_task(make_client, xlsx_file: Path) -> None:
    client = await make_client(training_function="standin:steady")
    await upload(client, xlsx_file)
    task_id = (await create(client, task_body(xlsx_file.name, random_seed=300)))["task_id"]
    response = await client.post(f"{TASKS}/{task_id}/predict", json={"texts": ["工厂"]})
    assert response.status == 409 and (await response.json())["error"]["code"] == "conflict"
    assert (await client.get(f"{TASKS}/{task_id}/download")).status == 409
    assert (await client.post(f"{TASKS}/nope/predict", json={"texts": ["x"]})).status == 404
    await client.post(f"{TASKS}/{task_id}/stop")
