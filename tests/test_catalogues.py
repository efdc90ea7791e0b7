"""Every message a person reads has its Chinese: the catalogues hold every message the code uses
(extracted afresh with pybabel, the same way `python -m bertd.i18n.catalogues update` does), each
with a non-empty, non-fuzzy Chinese entry with the same {fields}; the compiled bertd.mo and the
dashboard's zh-CN.json are current; and the wheel carries the compiled catalogue."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from bertd.i18n import catalogues

ROOT = Path(__file__).resolve().parent.parent


def test_every_message_has_its_chinese_and_the_compiled_catalogues_are_current() -> None:
    assert catalogues.problems() == []


def test_every_literal_message_in_the_code_is_in_the_catalogues() -> None:
    """A second look that does not rely on pybabel: every Text/N_/translate/tr call with a literal
    in the Python code, and every t("...") / N_("...") in the dashboard's scripts, has a Chinese entry."""
    python = catalogues.translations(catalogues.SERVER.po)
    for path in sorted((ROOT / "bertd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name in catalogues.SERVER.keywords:
                    assert python.get(node.args[0].value), f"{path.name}:{node.lineno}: {node.args[0].value!r}"
    dashboard = catalogues.translations(catalogues.DASHBOARD.po)
    call = re.compile(r"""(?<![\w.$])(?:t|N_)\(\s*(["'])((?:\\.|(?!\1).)*)\1""")
    for path in sorted((ROOT / "bertd" / "static").glob("*.js")):
        for match in call.finditer(path.read_text(encoding="utf-8")):
            text = ast.literal_eval(match.group(1) + match.group(2) + match.group(1))
            assert dashboard.get(text), f"{path.name}: {text!r}"


def test_the_wheel_carries_the_compiled_catalogue_and_the_dashboards(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("bertd-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"bertd/locale/zh_CN/LC_MESSAGES/bertd.mo", "bertd/static/i18n/zh-CN.json"} <= names
