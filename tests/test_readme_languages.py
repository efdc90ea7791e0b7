"""README.zh-CN.md is README.md in Chinese, kept in step with it: the two link each other, the
Chinese one has every configuration variable and every task error code the English one has (and
no other), and the screenshots it shows are committed PNG files."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGLISH = (ROOT / "README.md").read_text(encoding="utf-8")
CHINESE = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text of the `## heading` section, up to the next `## `."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def configuration_variables(text: str, heading: str) -> list[str]:
    rows = [line for line in section(text, heading).splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])]


def error_codes(text: str, introduction: str) -> list[str]:
    """The codes of the list that follows `introduction` ("Codes:" / "错误代码：")."""
    listed = text[text.index(introduction):].split("\n\n")[0]
    return list(dict.fromkeys(re.findall(r"`([a-z_]+)`", listed)))


def test_the_readmes_link_each_other() -> None:
    assert "[简体中文](README.zh-CN.md)" in ENGLISH.splitlines()[2]
    assert "[English](README.md)" in CHINESE.splitlines()[2]


def test_the_chinese_readme_has_every_configuration_variable() -> None:
    english = configuration_variables(ENGLISH, "Configuration")
    assert len(english) > 30 and "API_TOKEN" in english
    assert configuration_variables(CHINESE, "配置") == english


def test_the_chinese_readme_has_every_task_error_code() -> None:
    english = error_codes(ENGLISH, "Codes: `base_model_missing`")
    assert "single_label" in english and "training_error" in english
    assert error_codes(CHINESE, "错误代码：") == english


def test_the_chinese_screenshots_are_committed() -> None:
    images = re.findall(r"!\[[^\]]*\]\((docs/[^)]+)\)", CHINESE)
    assert len(images) == 4 and all(".zh-CN.png" in image for image in images)
    for image in images:
        assert (ROOT / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image
