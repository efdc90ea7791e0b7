"""Labelled Chinese example data about air pollution, written by the tests, the benchmarks and
`bertd demo` themselves (none of them may depend on a file a user's clone lacks).

Two styles: `labelled_rows` builds short sentences from a few words per label plus shared filler,
which even a tiny model separates in a few epochs; `noisy_frame` builds longer texts that are
mostly filler with a share of label characters, so a model must read the whole text."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# Each label has its own words. Tests use the first six of each (and ten fillers); the demo uses
# all seven (and eleven): the same generator, so the same seed gives the same rows as always.
LABEL_WORDS = {
    "工业废气": ["工厂", "烟囱", "排放", "化工", "废气", "车间", "锅炉"],
    "扬尘": ["工地", "尘土", "渣土", "施工", "沙石", "飞扬", "裸土"],
    "油烟": ["饭店", "餐馆", "油烟", "厨房", "烧烤", "排烟", "夜宵"],
}
FILLER = ["市民", "反映", "附近", "每天", "严重", "影响", "居民", "希望", "处理", "小区", "晚上"]


def sentence(label: str, rng: random.Random, words_per_label: int = 6) -> str:
    words = rng.sample(LABEL_WORDS[label][:words_per_label], 3) + rng.sample(FILLER[:words_per_label + 4], 3)
    rng.shuffle(words)
    return "".join(words) + "。"


def labelled_rows(rows_per_label: int = 20, seed: int = 0, *, labels: list[str] | None = None,
                  words_per_label: int = 6, text_column: str = "内容", label_column: str = "标签",
                  id_column: str | None = "编号") -> list[dict[str, str]]:
    """Rows of `rows_per_label` sentences per label, shuffled with `seed`."""
    rng = random.Random(seed)
    records = []
    for label in labels or list(LABEL_WORDS):
        for index in range(rows_per_label):
            record = {id_column: f"{label}-{index}"} if id_column else {}
            record.update({text_column: sentence(label, rng, words_per_label), label_column: label})
            records.append(record)
    rng.shuffle(records)
    return records


def characters(words_per_label: int = 6) -> str:
    """Every character the short sentences use, for a tiny model's vocabulary."""
    words = "".join("".join(words[:words_per_label]) + label for label, words in LABEL_WORDS.items())
    return words + "".join(FILLER[:words_per_label + 4]) + "。，！？abcdefghijklmnopqrstuvwxyz0123456789"


# The longer texts: class-specific characters plus shared filler, six labels as in the seed's file.
NOISY_LABEL_CHARACTERS = {
    "工业废气": "工厂烟囱排放化工废气车间锅炉焚烧刺鼻气味",
    "扬尘": "工地尘土渣土施工沙石飞扬裸露道路清扫",
    "油烟": "饭店餐馆油烟厨房烧烤排烟净化器夜市",
    "机动车废气": "货车尾气柴油车冒黑烟公交车发动机怠速",
    "其他废气": "垃圾焚烧秸秆燃烧异味养殖场臭气污水",
    "其他": "噪音投诉咨询政策举报环境监测信息公开",
}
NOISY_FILLER = "市民反映附近每天严重影响居民希望相关部门尽快处理小区周边晚上白天多次"


def noisy_sentence(label: str, rng: random.Random, mean_chars: int, signal: float) -> str:
    length = max(8, int(rng.gauss(mean_chars, mean_chars / 4)))
    # Mostly filler with some class characters (a `signal` share): a model must read the whole text.
    return "".join(rng.choice(NOISY_LABEL_CHARACTERS[label]) if rng.random() < signal else rng.choice(NOISY_FILLER)
                   for _ in range(length))


def noisy_frame(rows: int, mean_chars: int, seed: int = 0, signal: float = 0.25) -> pd.DataFrame:
    """`rows` texts (columns 内容合并 / 标签列, as in the seed's file), the labels in turn, shuffled."""
    import pandas as pd

    rng = random.Random(seed)
    labels = list(NOISY_LABEL_CHARACTERS)
    records: list[dict[str, Any]] = [{"内容合并": noisy_sentence(label, rng, mean_chars, signal), "标签列": label}
                                     for label in (labels[i % len(labels)] for i in range(rows))]
    rng.shuffle(records)
    return pd.DataFrame(records)


def noisy_characters() -> str:
    return "".join(NOISY_LABEL_CHARACTERS.values()) + NOISY_FILLER + "".join(NOISY_LABEL_CHARACTERS)
