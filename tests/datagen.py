"""Small labelled Chinese datasets written by the tests themselves."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

# Each label has its own words, so even a tiny model separates them in a few epochs.
LABEL_WORDS = {
    "工业废气": ["工厂", "烟囱", "排放", "化工", "废气", "车间"],
    "扬尘": ["工地", "尘土", "渣土", "施工", "沙石", "飞扬"],
    "油烟": ["饭店", "餐馆", "油烟", "厨房", "烧烤", "排烟"],
}
FILLER = ["市民", "反映", "附近", "每天", "严重", "影响", "居民", "希望", "处理", "小区"]


def sentence(label: str, rng: random.Random) -> str:
    words = rng.sample(LABEL_WORDS[label], 3) + rng.sample(FILLER, 3)
    rng.shuffle(words)
    return "".join(words) + "。"


def labelled_frame(rows_per_label: int = 20, seed: int = 0, labels: list[str] | None = None) -> pd.DataFrame:
    rng = random.Random(seed)
    chosen = labels or list(LABEL_WORDS)
    records = [{"编号": f"{label}-{i}", "内容": sentence(label, rng), "标签": label}
               for label in chosen for i in range(rows_per_label)]
    rng.shuffle(records)
    return pd.DataFrame(records, columns=["编号", "内容", "标签"])


def all_characters() -> str:
    return "".join(LABEL_WORDS_TEXT) + "".join(FILLER) + "。，！？abcdefghijklmnopqrstuvwxyz0123456789"


LABEL_WORDS_TEXT = ["".join(words) + label for label, words in LABEL_WORDS.items()]


def write_xlsx(path: Path, sheets: dict[str, pd.DataFrame]) -> Path:
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name, index=False)
    return path


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False, encoding="utf-8")
    return path
