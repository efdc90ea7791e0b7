"""The baseline: the plain Hugging Face Trainer script a user would otherwise write for a bertd task.

Reads the sheet with pandas, drops empty texts, maps labels, makes the same stratified split as
bertd (seeded; bertd's own function, the one thing it borrows), tokenizes, fine-tunes with Trainer
(AdamW, linear schedule, evaluation and a checkpoint every epoch, best epoch by macro-F1 kept),
saves the model. Prints one JSON line.

    python bench/trainer_script.py DATA.xlsx BASE_MODEL_DIR OUT_DIR --text 内容合并 --label 标签列 \
        --epochs 3 --batch-size 16 --lr 2e-5 --max-length 256 [--padding max_length|dynamic|group]
"""

from __future__ import annotations

import argparse
import json
import time

START = time.perf_counter()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

# The same seeded split as bertd's, from bertd itself, so the two can never drift apart.
from bertd.training.data import stratified_split  # noqa: E402


class Rows(torch.utils.data.Dataset):
    def __init__(self, encodings: dict, labels: np.ndarray) -> None:
        self.encodings, self.labels = encodings, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        item = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = int(self.labels[index])
        return item


def macro_f1(predictions: np.ndarray, labels: np.ndarray, classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = np.sum((predictions == c) & (labels == c))
        fp = np.sum((predictions == c) & (labels != c))
        fn = np.sum((predictions != c) & (labels == c))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("base_model")
    parser.add_argument("output")
    parser.add_argument("--text", default="内容合并")
    parser.add_argument("--label", default="标签列")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--split", type=float, default=0.2)
    parser.add_argument("--padding", choices=("max_length", "dynamic", "group"), default="dynamic")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--no-eval", action="store_true", help="train only (for throughput)")
    args = parser.parse_args()

    frame = pd.read_excel(args.data) if args.data.endswith(".xlsx") else pd.read_csv(args.data)
    frame = frame[frame[args.text].notna() & (frame[args.text].astype(str).str.strip() != "")]
    texts = frame[args.text].astype(str).str.strip().tolist()
    labels = frame[args.label].astype(str).str.strip().tolist()
    names = sorted(set(labels))
    label_ids = np.array([names.index(label) for label in labels])
    train_index, validation_index = stratified_split(label_ids, args.split, args.seed)

    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    padding = "max_length" if args.padding == "max_length" else False
    encode = lambda index: tokenizer([texts[i] for i in index], truncation=True, max_length=args.max_length,  # noqa: E731
                                     padding=padding)
    train_rows = Rows(encode(train_index), label_ids[train_index])
    validation_rows = Rows(encode(validation_index), label_ids[validation_index])
    model = AutoModelForSequenceClassification.from_pretrained(
        args.base_model, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)})

    training_args = TrainingArguments(
        output_dir=args.output,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=0.01,
        seed=args.seed,
        eval_strategy="no" if args.no_eval else "epoch",
        save_strategy="no" if args.no_eval else "epoch",
        load_best_model_at_end=not args.no_eval,
        metric_for_best_model="macro_f1",
        save_total_limit=1,
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        bf16=args.bf16,
        train_sampling_strategy="group_by_length" if args.padding == "group" else "random",
    )

    def compute_metrics(prediction) -> dict:
        predicted = prediction.predictions.argmax(-1)
        return {"accuracy": float((predicted == prediction.label_ids).mean()),
                "macro_f1": macro_f1(predicted, prediction.label_ids, len(names))}

    trainer = Trainer(model=model, args=training_args, train_dataset=train_rows,
                      eval_dataset=None if args.no_eval else validation_rows,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics)
    train_output = trainer.train()
    result = {"train_runtime": train_output.metrics["train_runtime"],
              "train_samples_per_second": len(train_rows) * args.epochs / train_output.metrics["train_runtime"]}
    if not args.no_eval:
        evaluation = trainer.evaluate()
        result.update(val_accuracy=evaluation["eval_accuracy"], val_macro_f1=evaluation["eval_macro_f1"])
        trainer.save_model(args.output)
        tokenizer.save_pretrained(args.output)
    result["wall_seconds"] = time.perf_counter() - START
    import resource

    result["peak_memory_mib"] = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
                                 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
