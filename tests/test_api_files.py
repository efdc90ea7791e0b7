"""Uploads: metadata, Unicode names, idempotent re-upload, conflicts, and rejected input."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import aiohttp
import pytest

from bertd.server.keys import CONFIG

from datagen import labelled_frame, write_csv
from helpers import create, task_body, upload, wait_for

FILES = "/api/v1/files"


def stored_names(client) -> list[str]:
    """Everything in the uploads folder, temporary files included."""
    return sorted(path.name for path in client.app[CONFIG].uploads_dir.iterdir())


async def post_bytes(client, name: str, content: bytes, quote: bool = False) -> aiohttp.ClientResponse:
    form = aiohttp.FormData(quote_fields=quote)
    form.add_field("file", io.BytesIO(content), filename=name)
    return await client.post(FILES, data=form)


async def test_upload_xlsx_reads_sheets_columns_and_rows(make_client, xlsx_file: Path) -> None:
    client = await make_client()
    response = await upload(client, xlsx_file)
    assert response.status == 201
    assert "环境保护_测试数据.xlsx" in await response.text()  # UTF-8 JSON, not \uXXXX escapes
    body = await response.json()
    assert body["filename"] == "环境保护_测试数据.xlsx"
    assert body["size_bytes"] == xlsx_file.stat().st_size and len(body["sha256"]) == 64
    assert body["uploaded_at"].endswith("Z")
    assert body["sheets"] == [
        {"name": "data", "rows": 90, "columns": ["编号", "内容", "标签"]},
        {"name": "notes", "rows": 9, "columns": ["编号"]},
    ]
    assert stored_names(client) == ["环境保护_测试数据.xlsx"]
    assert (client.app[CONFIG].uploads_dir / xlsx_file.name).read_bytes() == xlsx_file.read_bytes()

    assert (await (await client.get(FILES)).json()) == {"files": [body]}
    one = await client.get(f"{FILES}/环境保护_测试数据.xlsx")
    assert one.status == 200 and await one.json() == body


async def test_upload_csv_has_one_sheet(make_client, csv_file: Path) -> None:
    client = await make_client()
    body = await (await upload(client, csv_file)).json()
    assert body["sheets"] == [{"name": "训练数据", "rows": 48, "columns": ["编号", "内容", "标签"]}]


async def test_gb18030_csv_is_read(make_client, tmp_path: Path) -> None:
    client = await make_client()
    path = tmp_path / "gbk.csv"
    labelled_frame(rows_per_label=2).to_csv(path, index=False, encoding="gb18030")
    response = await upload(client, path)
    assert response.status == 201
    assert (await response.json())["sheets"][0]["columns"] == ["编号", "内容", "标签"]


async def test_percent_encoded_filenames_are_decoded(make_client, csv_file: Path) -> None:
    client = await make_client()
    response = await post_bytes(client, "训练数据.csv", csv_file.read_bytes(), quote=True)
    assert response.status == 201
    assert (await response.json())["filename"] == "训练数据.csv"


async def test_reupload_is_idempotent_and_different_bytes_conflict(make_client, csv_file: Path, tmp_path) -> None:
    client = await make_client()
    first = await upload(client, csv_file)
    again = await upload(client, csv_file)
    assert first.status == 201 and again.status == 200
    assert await again.json() == await first.json()
    other = write_csv(tmp_path / "other.csv", labelled_frame(rows_per_label=3, seed=9))
    conflict = await upload(client, other, name=csv_file.name)
    assert conflict.status == 409
    error = (await conflict.json())["error"]
    assert error["code"] == "conflict" and csv_file.name in error["message"]
    assert stored_names(client) == [csv_file.name]
    assert (client.app[CONFIG].uploads_dir / csv_file.name).read_bytes() == csv_file.read_bytes()


BAD_UPLOADS = [
    ("../escape.csv", b"a,b\n1,2\n", 400, "validation_error"),
    ("dir/inner.csv", b"a,b\n1,2\n", 400, "validation_error"),
    ("..\\windows.csv", b"a,b\n1,2\n", 400, "validation_error"),
    (".hidden.csv", b"a,b\n1,2\n", 400, "validation_error"),
    ("notes.txt", b"hello", 415, "unsupported_media_type"),
    ("model.xls", b"\xd0\xcf\x11\xe0", 415, "unsupported_media_type"),
    ("broken.xlsx", b"this is not a zip", 400, "validation_error"),
    ("empty.csv", b"", 400, "validation_error"),
]


@pytest.mark.parametrize(("name", "content", "status", "code"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
async def test_bad_uploads_are_rejected_and_leave_nothing(make_client, name, content, status, code) -> None:
    client = await make_client()
    response = await post_bytes(client, name, content)
    body = await response.json()
    assert response.status == status, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert stored_names(client) == []
    assert (await (await client.get(FILES)).json()) == {"files": []}


async def test_zip_that_is_not_a_workbook_is_rejected(make_client) -> None:
    client = await make_client()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    response = await post_bytes(client, "fake.xlsx", buffer.getvalue())
    assert response.status == 400
    assert "fake.xlsx" in (await response.json())["error"]["message"]
    assert stored_names(client) == []


async def test_upload_without_file_part_or_multipart(make_client) -> None:
    client = await make_client()
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("other", "x")
    response = await client.post(FILES, data=form)
    assert response.status == 400 and "'file'" in (await response.json())["error"]["message"]
    plain = await client.post(FILES, data=b"abc", headers={"Content-Type": "application/octet-stream"})
    assert plain.status == 415


async def test_upload_larger_than_the_limit_gets_413_and_keeps_nothing(make_client) -> None:
    client = await make_client(max_upload_mb=1)
    response = await post_bytes(client, "big.csv", b"text,label\n" + b"x" * (2 << 20))
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"
    assert stored_names(client) == []


async def test_delete_file_and_refuse_while_a_task_uses_it(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady")
    await upload(client, csv_file)
    task = await create(client, task_body(csv_file.name, random_seed=400, sheet_name=None))
    busy = await client.delete(f"{FILES}/{csv_file.name}")
    assert busy.status == 409
    error = (await busy.json())["error"]
    assert error["details"]["task_ids"] == [task["task_id"]]
    assert stored_names(client) == [csv_file.name]

    await client.post(f"/api/v1/training/tasks/{task['task_id']}/stop")
    await wait_for(client, task["task_id"], {"stopped"}, timeout=20)
    done = await client.delete(f"{FILES}/{csv_file.name}")
    assert done.status == 200 and (await done.json())["deleted"] is True
    assert stored_names(client) == []
    assert (await client.get(f"{FILES}/{csv_file.name}")).status == 404
    assert (await client.delete(f"{FILES}/{csv_file.name}")).status == 404
