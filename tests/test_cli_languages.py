"""The `bertd` command in the terminal's language: Chinese under a zh_CN locale (LC_ALL, LC_MESSAGES,
LANG in POSIX order), English otherwise; the server's errors come back in the same language;
--json output is the same in both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from processes import start_server, stop_server


def bertd(*arguments: str, url: str, **locale: str) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name not in ("LC_ALL", "LC_MESSAGES", "LANG")}
    return subprocess.run([sys.executable, "-m", "bertd", *arguments], capture_output=True, text=True, timeout=120,
                          env={**environment, "BERTD_URL": url, **locale})


def test_human_output_and_server_errors_follow_the_locale(tmp_path: Path, base_models_dir: Path,
                                                          xlsx_file: Path) -> None:
    server = start_server(tmp_path / "data", base_models_dir, tmp_path / "server.log")
    url = server.url
    chinese, english = {"LANG": "zh_CN.UTF-8"}, {"LANG": "C.UTF-8"}
    try:
        missing = bertd("show", "nope", url=url, **chinese)
        assert (missing.returncode, missing.stdout) == (1, "")
        assert missing.stderr.strip() == "bertd: 没有 task_id 为 'nope' 的训练任务 (HTTP 404)"
        missing = bertd("show", "nope", url=url, **english)
        assert missing.stderr.strip() == "bertd: no training task with task_id 'nope' (HTTP 404)"
        # POSIX order: LC_ALL over LC_MESSAGES over LANG.
        missing = bertd("show", "nope", url=url, LC_ALL="C.UTF-8", LANG="zh_CN.UTF-8")
        assert missing.stderr.strip() == "bertd: no training task with task_id 'nope' (HTTP 404)"
        missing = bertd("show", "nope", url=url, LC_MESSAGES="zh_CN.UTF-8", LANG="C.UTF-8")
        assert missing.stderr.strip() == "bertd: 没有 task_id 为 'nope' 的训练任务 (HTTP 404)"

        assert bertd("tasks", url=url, **chinese).stdout.strip() == "没有训练任务"
        assert bertd("tasks", url=url, **english).stdout.strip() == "no tasks"

        uploaded = bertd("upload", str(xlsx_file), url=url, **chinese)
        assert uploaded.returncode == 0, uploaded.stderr
        assert uploaded.stdout.startswith(f"已上传 {xlsx_file.name}（")
        assert "工作表 'data'：90 行，列 编号, 内容, 标签" in uploaded.stdout

        bad = bertd("train", str(xlsx_file), "--text-column", "正文", "--label-column", "标签", "--sheet", "data",
                    url=url, **chinese)
        assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1
        assert bad.stderr.startswith("bertd: hyperparameters.text_column：在 ")
        assert "中找不到列 '正文'；现有的列：编号, 内容, 标签 (HTTP 400)" in bad.stderr

        queued = bertd("train", str(xlsx_file), "--text-column", "内容", "--label-column", "标签", "--sheet", "data",
                       "--base-model", "tiny-bert", "--epochs", "1", url=url, **chinese)
        assert queued.returncode == 0, queued.stderr
        task_id = queued.stdout.split()[1]
        assert queued.stdout.startswith(f"任务 {task_id} ")

        shown = bertd("show", task_id, url=url, **chinese)
        assert shown.returncode == 0
        assert shown.stdout.splitlines()[1].startswith(f"  数据：{xlsx_file.name}  基础模型：tiny-bert")
        shown = bertd("show", task_id, url=url, **english)
        assert shown.stdout.splitlines()[1].startswith(f"  data: {xlsx_file.name}  base model: tiny-bert")

        as_json = {language: bertd("tasks", "--json", url=url, **locale).stdout
                   for language, locale in (("zh", chinese), ("en", english))}
        assert as_json["zh"] == as_json["en"] and json.loads(as_json["zh"])["tasks"][0]["task_id"] == task_id

        help_text = bertd("--help", url=url, **chinese).stdout
        assert "通过 REST API 微调 BERT 文本分类模型。" in help_text
    finally:
        stop_server(server)
