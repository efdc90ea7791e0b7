"""Quality: bertd against the plain Trainer script on the same (harder) data, model, seed and
hyperparameters: validation accuracy and macro-F1 side by side.

    python bench/quality.py --rows 1500 --epochs 4 --signal 0.06
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from common import build_base_model, machine_description, make_frame, running_server, temporary_directory
from whole_task import bertd_task, trainer_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--signal", type=float, default=0.06, help="share of class characters in a text")
    parser.add_argument("--seeds", default="42,7")
    arguments = parser.parse_args()

    work = temporary_directory()
    base_model = build_base_model(work / "data" / "base_models" / "bench-bert", hidden=128, layers=2, heads=2)
    data = work / "quality.xlsx"
    make_frame(arguments.rows, mean_chars=120, seed=1, signal=arguments.signal).to_excel(data, index=False)
    rows = []
    with running_server(work / "data") as server:
        server.upload(data)
        for seed in (int(s) for s in arguments.seeds.split(",")):
            hp = {"text_column": "内容合并", "label_column": "标签列", "epochs": arguments.epochs, "batch_size": 16,
                  "learning_rate": 5e-4, "max_sequence_length": 256, "random_seed": seed}
            body = {"model_name_cn": "质量", "model_name_en": "quality", "training_data_file": data.name,
                    "base_model": "bench-bert", "hyperparameters": hp}
            ours = bertd_task(server, body)
            theirs = trainer_task(data, base_model, work / f"trainer{seed}", {**hp, "seed": seed}, "dynamic")
            rows.append((seed, ours, theirs))
            print(seed, ours, theirs, flush=True)

    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {machine_description()}")
    print(f"`python bench/quality.py --rows {arguments.rows} --epochs {arguments.epochs} --signal {arguments.signal} "
          f"--seeds {arguments.seeds}`\n")
    print("| seed | bertd accuracy | Trainer accuracy | bertd macro-F1 | Trainer macro-F1 |")
    print("|---|---|---|---|---|")
    for seed, ours, theirs in rows:
        print(f"| {seed} | {ours['val_accuracy']:.3f} | {theirs['val_accuracy']:.3f} | "
              f"{ours['val_macro_f1']:.3f} | {theirs['val_macro_f1']:.3f} |")


if __name__ == "__main__":
    main()
