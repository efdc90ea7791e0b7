"""Errors, failed tasks' errors and the OpenAPI document in the reader's language: Chinese for an
Accept-Language that prefers zh (or ?lang=zh for the docs), English otherwise; codes and field
names never change."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertd.i18n import ENGLISH, SIMPLIFIED_CHINESE, Text, cli_language, negotiate
from bertd.i18n.documents import document_texts
from bertd.protocol import TaskError

from datagen import labelled_frame, write_xlsx
from helpers import create, task_body, upload, wait_for

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}


def has_chinese(text: str) -> bool:
    return any("\u4e00" <= char <= "\u9fff" for char in text)


@pytest.mark.parametrize(("header", "language"), [
    ("zh-CN,zh;q=0.9,en;q=0.8", SIMPLIFIED_CHINESE),
    ("zh", SIMPLIFIED_CHINESE),
    ("zh-TW", SIMPLIFIED_CHINESE),
    ("en-US,en;q=0.9", ENGLISH),
    ("en-US,zh;q=0.9", ENGLISH),
    ("en;q=0.5, zh;q=0.6", SIMPLIFIED_CHINESE),
    ("zh;q=0, en", ENGLISH),
    ("fr-FR, zh;q=0.5", SIMPLIFIED_CHINESE),
    ("fr-FR", ENGLISH),
    ("*", ENGLISH),
    ("", ENGLISH),
    (None, ENGLISH),
    ("zh;q=abc, en;q=0.1", ENGLISH),
])
def test_accept_language_is_negotiated_with_q_values(header: str | None, language: str) -> None:
    assert negotiate(header) == language


@pytest.mark.parametrize(("environment", "language"), [
    ({"LANG": "zh_CN.UTF-8"}, SIMPLIFIED_CHINESE),
    ({"LANG": "C.UTF-8"}, ENGLISH),
    ({"LANG": "zh_CN.UTF-8", "LC_ALL": "C.UTF-8"}, ENGLISH),
    ({"LANG": "C.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, SIMPLIFIED_CHINESE),
    ({"LC_ALL": "zh_CN.GB18030", "LC_MESSAGES": "en_US.UTF-8"}, SIMPLIFIED_CHINESE),
    ({"LC_ALL": "", "LANG": "zh_CN.UTF-8"}, SIMPLIFIED_CHINESE),
    ({}, ENGLISH),
])
def test_the_cli_language_follows_the_posix_precedence(environment: dict[str, str], language: str) -> None:
    assert cli_language(environment) == language


def test_a_text_renders_in_either_language_and_travels_as_json() -> None:
    text = Text("no training task with task_id {task_id!r}", task_id="abc")
    assert str(text) == "no training task with task_id 'abc'"
    assert text.render(SIMPLIFIED_CHINESE) == "没有 task_id 为 'abc' 的训练任务"
    error = TaskError.of("single_label", Text("label column {column!r} in {where} has only one label ({label!r})",
                                              column="标签", where=Text("sheet {sheet!r} of {name}", sheet="data",
                                                                        name="a.xlsx"), label="扬尘"),
                         Text("create it again to retry"))
    again = TaskError.model_validate_json(error.model_dump_json())
    assert again == error
    assert again.localized(ENGLISH) == {
        "code": "single_label", "message": "label column '标签' in sheet 'data' of a.xlsx has only one label ('扬尘')",
        "hint": "create it again to retry"}
    assert again.localized(SIMPLIFIED_CHINESE) == {
        "code": "single_label", "message": "a.xlsx 的工作表 'data' 中的标签列 '标签' 只有一个标签（'扬尘'）",
        "hint": "请重新创建任务以重试"}
    assert again.text_in(SIMPLIFIED_CHINESE) == ("a.xlsx 的工作表 'data' 中的标签列 '标签' 只有一个标签（'扬尘'）；"
                                                 "请重新创建任务以重试")
    # An error recorded before Texts existed is shown as stored, in any language.
    old = TaskError(code="training_error", message="it broke", hint="retry")
    assert old.localized(SIMPLIFIED_CHINESE) == {"code": "training_error", "message": "it broke", "hint": "retry"}


async def test_api_errors_follow_accept_language_and_keep_code_and_field(make_client) -> None:
    client = await make_client()
    english = await client.get("/api/v1/training/tasks/nope")
    chinese = await client.get("/api/v1/training/tasks/nope", headers=ZH)
    assert english.status == chinese.status == 404
    assert (await english.json())["error"] == {"code": "not_found", "details": None,
                                               "message": "no training task with task_id 'nope'"}
    assert (await chinese.json())["error"] == {"code": "not_found", "details": None,
                                               "message": "没有 task_id 为 'nope' 的训练任务"}

    body = task_body("missing.xlsx", epochs=0)
    english = await (await client.post("/api/v1/training/tasks", json=body)).json()
    chinese = await (await client.post("/api/v1/training/tasks", json=body, headers=ZH)).json()
    assert english["error"] == {"code": "validation_error", "details": {"field": "hyperparameters.epochs"},
                                "message": "hyperparameters.epochs must be >= 1 and <= 1000, got 0"}
    assert chinese["error"] == {"code": "validation_error", "details": {"field": "hyperparameters.epochs"},
                                "message": "hyperparameters.epochs 必须 >= 1 且 <= 1000，实际为 0"}

    unknown = await client.post("/api/v1/training/tasks", json={**body, "colour": "red"},
                                headers={"Accept-Language": "en;q=0.5, zh;q=0.8"})
    error = (await unknown.json())["error"]
    assert error["code"] == "validation_error" and error["details"] == {"unknown": ["colour"]}
    assert error["message"].startswith("未知字段 colour；只接受：model_name_cn, model_name_en")

    route = await client.get("/api/v1/nowhere", headers={"Accept-Language": "zh;q=0.1, en"})
    assert (await route.json())["error"]["message"] == "no route for GET /api/v1/nowhere"
    route = await client.get("/api/v1/nowhere", headers=ZH)
    assert (await route.json())["error"] == {"code": "not_found", "message": "没有 GET /api/v1/nowhere 这个路由",
                                             "details": None}
    tasks = await (await client.get("/api/v1/training/tasks")).json()
    assert tasks["total"] == 0


async def test_a_failed_tasks_error_is_shown_in_the_readers_language(make_client, tmp_path: Path) -> None:
    client = await make_client()
    one_label = write_xlsx(tmp_path / "one_label.xlsx", {"data": labelled_frame(rows_per_label=10, labels=["扬尘"])})
    assert (await upload(client, one_label)).status == 201
    task = await create(client, task_body(one_label.name, epochs=1))
    english = await wait_for(client, task["task_id"], {"failed", "completed"}, timeout=60)
    assert english["error"] == {
        "code": "single_label",
        "message": "label column '标签' in sheet 'data' of one_label.xlsx has only one label ('扬尘')",
        "hint": "a classifier needs at least 2: add rows of another label, or check that label_column is the right "
                "column"}
    chinese = await (await client.get(f"/api/v1/training/tasks/{task['task_id']}", headers=ZH)).json()
    assert chinese["status"] == "failed"
    assert chinese["error"] == {
        "code": "single_label",
        "message": "one_label.xlsx 的工作表 'data' 中的标签列 '标签' 只有一个标签（'扬尘'）",
        "hint": "分类模型至少需要 2 个标签：请添加其他标签的行，或检查 label_column 是否指向正确的列"}
    assert chinese["error_message"] == f"{chinese['error']['message']}；{chinese['error']['hint']}"
    listed = await (await client.get("/api/v1/training/tasks", headers=ZH)).json()
    assert listed["tasks"][0]["error"] == chinese["error"]
    # Everything else in the task is the same in both languages.
    assert {k: v for k, v in chinese.items() if not k.startswith("error")} == \
        {k: v for k, v in english.items() if not k.startswith("error")}


async def test_a_tasks_warnings_are_shown_in_the_readers_language(make_client, tmp_path: Path) -> None:
    client = await make_client()
    frame = labelled_frame(rows_per_label=10)
    frame.loc[0, "内容"] = "  "
    frame.loc[1, "内容"] = None
    data = write_xlsx(tmp_path / "空行.xlsx", {"data": frame})
    assert (await upload(client, data)).status == 201
    task = await create(client, task_body(data.name, epochs=1))
    assert (await wait_for(client, task["task_id"], {"failed", "completed"}, timeout=60))["status"] == "completed"
    path = f"/api/v1/training/tasks/{task['task_id']}/events?limit=1000"
    english = [e["data"] for e in (await (await client.get(path)).json())["events"] if e["type"] == "warning"]
    chinese = [e["data"] for e in (await (await client.get(path, headers=ZH)).json())["events"]
               if e["type"] == "warning"]
    assert english == [{"message": "dropped 2 row(s) with an empty text from sheet 'data' of 空行.xlsx"}]
    assert chinese == [{"message": "已从空行.xlsx 的工作表 'data'中去掉 2 行空文本的行"}]


async def test_the_openapi_document_and_docs_page_in_chinese(make_client) -> None:
    client = await make_client()
    english = await (await client.get("/api/v1/openapi.json")).json()
    chinese_response = await client.get("/api/v1/openapi.json?lang=zh")
    chinese = await chinese_response.json()
    assert chinese_response.headers["Content-Language"] == "zh-CN"
    by_header = await (await client.get("/api/v1/openapi.json", headers=ZH)).json()
    assert by_header == chinese
    assert await (await client.get("/api/v1/openapi.json?lang=en", headers=ZH)).json() == english

    texts = list(document_texts(chinese))
    assert len(texts) == len(list(document_texts(english))) > 100
    # Every summary and description is Chinese (a few are names such as "Swagger UI" or "OpenAPI 3.1").
    untranslated = [text for text in texts if not has_chinese(text)]
    assert set(untranslated) <= {"Swagger UI", "OpenAPI 3.1"}, untranslated
    assert chinese["paths"]["/api/v1/health"]["get"]["summary"] == "服务健康状况、设备和负载"
    hyperparameters = chinese["components"]["schemas"]["TaskRequest"]["properties"]["hyperparameters"]["properties"]
    assert hyperparameters["epochs"]["description"] == "遍历训练数据的轮数。"
    # Only the words change: the same paths, fields, enums and defaults.
    assert chinese["paths"].keys() == english["paths"].keys()
    english_hyperparameters = english["components"]["schemas"]["TaskRequest"]["properties"]["hyperparameters"]
    assert hyperparameters.keys() == english_hyperparameters["properties"].keys()
    assert hyperparameters["epochs"]["default"] == 3

    page = await client.get("/api/v1/docs?lang=zh")
    html = await page.text()
    assert '<html lang="zh-CN">' in html and 'url: "/api/v1/openapi.json?lang=zh"' in html
    page = await client.get("/api/v1/docs", headers=ZH)
    assert 'url: "/api/v1/openapi.json?lang=zh"' in await page.text()
    page = await client.get("/api/v1/docs")
    html = await page.text()
    assert '<html lang="en">' in html and 'url: "/api/v1/openapi.json?lang=en"' in html
