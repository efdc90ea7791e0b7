"""The baseline: the script a user would write to label a sheet with a trained model. Reads every sheet
with pandas, runs `transformers.pipeline("text-classification", model=path, batch_size=32)` over the
text column (with truncation to the model's training length: without it, a text longer than 512
tokens crashes the pipeline), writes every sheet back with the label and score columns added.
Prints one JSON line: the time of the pipeline call alone, and where the labels are.

    python bench/pipeline_script.py IN.xlsx MODEL_DIR OUT.xlsx --text 内容合并 --sheet data --max-length 256
"""

from __future__ import annotations

import argparse
import json
import time

START = time.perf_counter()

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from transformers import pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("model")
    parser.add_argument("output")
    parser.add_argument("--text", default="内容合并")
    parser.add_argument("--sheet", default="data")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    arguments = parser.parse_args()

    sheets = pd.read_excel(arguments.data, sheet_name=None, engine="openpyxl")
    frame = sheets[arguments.sheet]
    texts = frame[arguments.text].fillna("").astype(str).tolist()
    classifier = pipeline("text-classification", model=arguments.model, batch_size=arguments.batch_size,
                          device=0 if torch.cuda.is_available() else -1)
    started = time.perf_counter()
    results = classifier(texts, truncation=True, max_length=arguments.max_length)
    inference_seconds = time.perf_counter() - started
    frame["predicted_label"] = [result["label"] for result in results]
    frame["predicted_score"] = [result["score"] for result in results]
    with pd.ExcelWriter(arguments.output, engine="openpyxl") as writer:
        for name, sheet in sheets.items():
            sheet.to_excel(writer, sheet_name=name, index=False)
    print(json.dumps({"rows": len(texts), "inference_seconds": inference_seconds,
                      "script_seconds": time.perf_counter() - START}))


if __name__ == "__main__":
    main()
