"""Training throughput: bertd's training code against plain Hugging Face Trainer recipes, on the same
generated data (short texts ~70 tokens, long ~390), the same model config and hyperparameters, in
one run. Prints samples/s, real (unpadded) tokens/s, estimated useful TFLOP/s, peak memory and the
ratio to the best Trainer recipe. Each recipe runs in its own process.

    python bench/train_throughput.py --tiny          # CPU: a tiny BERT (hidden 128, 2 layers)
    python bench/train_throughput.py                 # GPU: BERT-base-chinese shape, random weights
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from common import all_characters, machine_description, make_frame, temporary_directory

HERE = Path(__file__).resolve().parent


def build_model(directory: Path, tiny: bool) -> Path:
    from bertd.testing.tiny_model import build_tiny_bert

    if tiny:
        return build_tiny_bert(directory, [all_characters()], hidden_size=128, layers=2, heads=2)
    # BERT-base shape with a 21128-entry vocabulary (as bert-base-chinese), random weights.
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from bertd.testing.tiny_model import character_vocabulary

    vocabulary = character_vocabulary([all_characters()])
    for index in range(len(vocabulary), 21128):
        vocabulary[f"[unused{index}]"] = index
    directory.mkdir(parents=True, exist_ok=True)
    BertTokenizerFast(vocab=vocabulary).save_pretrained(directory)
    BertModel(BertConfig(vocab_size=21128)).save_pretrained(directory)
    return directory


def child_bertd(arguments: argparse.Namespace) -> dict:
    import torch

    from bertd.protocol import TrainingJob
    from bertd.schema.requests import HYPERPARAMETER_FIELDS, validate_object
    from bertd.training.loop import run_training

    hp = validate_object(HYPERPARAMETER_FIELDS, {
        "text_column": "内容合并", "label_column": "标签列", "epochs": arguments.epochs,
        "batch_size": arguments.batch_size, "learning_rate": 3e-5, "max_sequence_length": arguments.max_length,
        "precision": "auto" if torch.cuda.is_available() else "fp32", "compile": arguments.compile,
        "lora": {"enabled": arguments.lora}})
    job = TrainingJob("bench", arguments.data, None, Path(arguments.model).name, str(Path(arguments.model).parent),
                      arguments.output, hp)
    result = run_training(job, lambda _message: None, lambda: False)
    return {"train_samples_per_second": result["metrics"]["samples_per_second"]}


def run_recipe(name: str, data: Path, model: Path, work: Path, arguments: argparse.Namespace) -> dict:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    common = ["--epochs", str(arguments.epochs), "--batch-size", str(arguments.batch_size)]
    if name.startswith("bertd"):
        command = [sys.executable, __file__, "--child", "--data", str(data), "--model", str(model),
                   "--output", str(work / name.replace(" ", "_")), "--max-length", str(arguments.max_length),
                   "--compile", "on" if "compile" in name else "off", *(["--lora"] if "LoRA" in name else []),
                   *common]
    else:
        padding = {"Trainer fp32 padded to max": "max_length", "Trainer dynamic padding": "dynamic",
                   "Trainer group_by_length": "group"}[name.replace(" bf16", "")]
        command = [sys.executable, str(HERE / "trainer_script.py"), str(data), str(model), str(work / "t"),
                   "--lr", "3e-5", "--max-length", str(arguments.max_length), "--padding", padding, "--no-eval",
                   *common, *(["--bf16"] if "bf16" in name and arguments.gpu else [])]
    completed = subprocess.run([*command], capture_output=True, text=True, env=environment, check=False)
    if completed.returncode != 0:
        return {"error": completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "failed"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model for the CPU")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--compile", default="off", help=argparse.SUPPRESS)
    parser.add_argument("--lora", action="store_true", help="also run bertd with LoRA (r 8 on query, value)")
    arguments = parser.parse_args()
    if arguments.child:
        result = child_bertd(arguments)
        import torch

        result["peak_memory_mib"] = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
                                     else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(result))
        return

    import torch

    arguments.gpu = torch.cuda.is_available()
    arguments.rows = arguments.rows or (800 if arguments.tiny else 8000)
    arguments.batch_size = arguments.batch_size or (16 if arguments.tiny else 64)
    work = temporary_directory()
    model = build_model(work / "base_models" / "bench-bert", arguments.tiny)
    parameters = sum(p.numel() for name, p in __import__("transformers").AutoModel.from_pretrained(model)
                     .named_parameters() if "embeddings" not in name)
    recipes = ["bertd", "Trainer fp32 padded to max", "Trainer dynamic padding", "Trainer group_by_length"]
    if arguments.gpu:  # the recipes of the table: bf16 where the GPU has it, and compile
        recipes = ["bertd", "bertd compile", "Trainer fp32 padded to max", "Trainer bf16 dynamic padding",
                   "Trainer bf16 group_by_length"]
    if arguments.lora:
        recipes.insert(1, "bertd LoRA")
    print(f"{datetime.now(UTC):%Y-%m-%d}, {machine_description()}"
          f"{', ' + torch.cuda.get_device_name() if arguments.gpu else ', CPU only'}")
    print(f"`python bench/train_throughput.py{' --tiny' if arguments.tiny else ''}{' --lora' if arguments.lora else ''} "
          f"--rows {arguments.rows} --epochs {arguments.epochs} --batch-size {arguments.batch_size} "
          f"--max-length {arguments.max_length}`"
          f"  ({parameters / 1e6:.1f} M non-embedding parameters)\n")
    print("| texts | recipe | samples/s | real tokens/s | est. useful TFLOP/s | peak memory | vs best Trainer |")
    print("|---|---|---|---|---|---|---|")
    for label, mean_chars in (("short", 68), ("long", 388)):
        data = work / f"{label}.csv"
        frame = make_frame(arguments.rows, mean_chars=mean_chars)
        frame.to_csv(data, index=False)
        tokens_per_row = frame["内容合并"].str.len().clip(upper=arguments.max_length - 2).mean() + 2
        results = {name: run_recipe(name, data, model, work, arguments) for name in recipes}
        best_trainer = max((r.get("train_samples_per_second", 0) for n, r in results.items() if n.startswith("Trainer")),
                           default=0)
        for name, result in results.items():
            if "error" in result:
                print(f"| {label} | {name} | failed: {result['error'][:80]} | | | | |")
                continue
            speed = result["train_samples_per_second"]
            tokens = speed * tokens_per_row
            memory = result.get("peak_memory_mib")
            # LoRA skips the weight gradients of frozen layers: about 4 instead of 6 FLOPs per parameter and token.
            flops_per_token = (4 if "LoRA" in name else 6) * parameters
            print(f"| {label} | {name} | {speed:.1f} | {tokens:,.0f} | {flops_per_token * tokens / 1e12:.3f} | "
                  f"{f'{memory:,.0f} MiB' if memory else '-'} | {speed / best_trainer:.2f}x |", flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
