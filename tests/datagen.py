"""Small labelled Chinese datasets written by the tests themselves (bertd.testing.example_data)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bertd.testing.example_data import LABEL_WORDS, characters, labelled_rows

__all__ = ["LABEL_WORDS", "all_characters", "labelled_frame", "write_csv", "write_xlsx"]


def labelled_frame(rows_per_label: int = 20, seed: int = 0, labels: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(labelled_rows(rows_per_label, seed, labels=labels), columns=["编号", "内容", "标签"])


def all_characters() -> str:
    return characters()


def write_xlsx(path: Path, sheets: dict[str, pd.DataFrame]) -> Path:
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name, index=False)
    return path


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False, encoding="utf-8")
    return path
