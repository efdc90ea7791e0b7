"""The training loop in-process: determinism, early stopping, stop flag, metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bertd.protocol import Hyperparameters, Interruption, LoraSettings, TrainingJob, TrainingStopped
from bertd.training.loop import run_training
from bertd.training.metrics import classification_report

from conftest import TINY_MODEL
from datagen import labelled_frame, write_csv


def job_for(tmp_path: Path, base_models_dir: Path, name: str, **changes) -> TrainingJob:
    data = tmp_path / "train.csv"
    if not data.exists():
        write_csv(data, labelled_frame(rows_per_label=30, seed=1))
    hyperparameters = Hyperparameters.model_validate({
        "text_column": "内容", "label_column": "标签", "epochs": 3, "batch_size": 8, "learning_rate": 3e-3,
        "max_sequence_length": 32, **changes})
    return TrainingJob(task_id=name, training_data_path=str(data), validation_data_path=None, base_model=TINY_MODEL,
                       base_models_dir=str(base_models_dir), output_dir=str(tmp_path / name),
                       hyperparameters=hyperparameters, report_interval=0.0)


def test_the_same_request_gives_the_same_metrics(tmp_path: Path, base_models_dir: Path) -> None:
    messages: list = []
    first = run_training(job_for(tmp_path, base_models_dir, "a"), messages.append, lambda: False)
    second = run_training(job_for(tmp_path, base_models_dir, "b"), lambda _: None, lambda: False)
    assert first.metrics["history"] == second.metrics["history"]
    assert first.metrics["confusion_matrix"] == second.metrics["confusion_matrix"]
    other_seed = run_training(job_for(tmp_path, base_models_dir, "c", random_seed=7), lambda _: None, lambda: False)
    assert other_seed.metrics["history"] != first.metrics["history"]

    kinds = [message.type for message in messages]
    assert kinds.count("epoch") == 3
    progress = [m for m in messages if m.type == "progress" and getattr(m, "phase", None) == "training"]
    assert progress[-1].step == progress[-1].total_steps == 3 * 9  # 72 train rows / batch 8
    assert all(m.learning_rate >= 0 and m.eta_seconds is not None for m in progress)
    assert Path(first.artifacts.model_path).name == "a"
    assert not (tmp_path / "a.partial").exists()


def test_early_stopping_ends_before_the_last_epoch(tmp_path: Path, base_models_dir: Path) -> None:
    messages: list = []
    # A zero learning rate cannot improve anything: patience 1 stops after epoch 2.
    result = run_training(
        job_for(tmp_path, base_models_dir, "e", epochs=6, learning_rate=1e-12, early_stopping_enabled=True,
                early_stopping_patience=1, early_stopping_metric="val_accuracy"),
        messages.append, lambda: False)
    assert len(result.metrics["history"]) == 2
    assert any("early stopping after epoch 2" in getattr(m, "message", "") for m in messages)


def test_the_stop_flag_is_checked_every_step(tmp_path: Path, base_models_dir: Path) -> None:
    steps: list[int] = []

    def report(message: dict) -> None:
        if message.type == "progress" and getattr(message, "phase", None) == "training":
            steps.append(message.step)

    with pytest.raises(TrainingStopped):
        run_training(job_for(tmp_path, base_models_dir, "s"), report,
                     lambda: Interruption.STOP if len(steps) >= 2 else None)
    assert steps == [1, 2]
    assert not (tmp_path / "s").exists()


def test_classification_report_matches_hand_computed_values() -> None:
    true = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 1])
    report = classification_report(true, predicted, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert report["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8),
                                        "support": 3}
    assert report["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)


def test_balanced_class_weights_and_step_evaluations(tmp_path: Path, base_models_dir: Path) -> None:
    frame = labelled_frame(rows_per_label=30, seed=1)
    imbalanced = frame[(frame["标签"] != "油烟") | (frame.index % 5 == 0)]  # 油烟 keeps about a fifth of its rows
    data = write_csv(tmp_path / "imbalanced.csv", imbalanced)
    job = job_for(tmp_path, base_models_dir, "w", class_weighting="balanced", evaluation_steps=4, epochs=2)
    job = job.model_copy(update={"training_data_path": str(data)})
    messages: list = []
    result = run_training(job, messages.append, lambda: False)
    weights = dict(zip(result.metrics["labels"], result.metrics["class_weights"], strict=True))
    assert weights["油烟"] > 2 * weights["扬尘"] and weights["扬尘"] == weights["工业废气"]
    evaluations = [m for m in messages if m.type == "evaluation"]
    assert [m.step % 4 for m in evaluations] == [0] * len(evaluations) and len(evaluations) >= 2
    steps = [entry["step"] for entry in result.metrics["history"]]
    assert steps == sorted(steps) and len(steps) == len(evaluations) + 2
    assert result.metrics["best_step"] in steps


def test_gpus_are_shared_out_least_used_first() -> None:
    from bertd.runtime.gpus import least_loaded_gpu

    assert least_loaded_gpu([0, 1], []) == 0
    assert least_loaded_gpu([0, 1], [0]) == 1
    assert least_loaded_gpu([0, 1], [0, 1]) == 0
    assert least_loaded_gpu([2, 3], [2, 2, 3]) == 3


def test_worker_messages_say_what_to_do() -> None:
    import errno

    import torch

    from bertd.protocol import TrainingInputError
    from bertd.training.worker import task_error

    oom = task_error(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert (oom.code, oom.message, oom.hint) == ("out_of_memory", "out of GPU memory", (
        "lower hyperparameters.batch_size or max_sequence_length, or raise gradient_accumulation_steps"))
    assert oom.text_in("zh_CN") != oom.text  # and it has its Chinese
    predicting = task_error(torch.cuda.OutOfMemoryError("CUDA out of memory."), "prediction")
    assert (predicting.code, predicting.hint) == ("out_of_memory", "run it when no other job uses the GPU")
    full = task_error(OSError(errno.ENOSPC, "No space left on device", "/data/models/x/model.safetensors"))
    assert full.text == ("could not write /data/models/x/model.safetensors: No space left on device; "
                         "free disk space in DATA_DIR or make it writable")
    other = task_error(ValueError("bad thing\nwith a second line"))
    assert (other.code, other.message) == ("training_error", "training failed with ValueError: bad thing")
    assert "server log" in other.hint
    # Too long to read whole: the reason is left to the log rather than cut off.
    long = task_error(RuntimeError("x" * 5000))
    assert long.message == "training failed with RuntimeError" and long.hint == other.hint

    # A long input error is shortened at a clause boundary, never inside a word; its hint stays whole.
    columns = ", ".join(f"第{i}列" for i in range(300))
    wordy = task_error(TrainingInputError(f"text column '正文' not found in sheet 'data' of a.xlsx; columns are: "
                                          f"{columns}", code="column_missing", hint="name one of the columns"))
    assert wordy.code == "column_missing" and wordy.hint == "name one of the columns"
    assert len(wordy.message) <= 400 and wordy.message.endswith(" …")
    assert wordy.message.removesuffix(" …").split(", ")[-1] in columns.split(", ")


def test_lora_with_a_full_fine_tuning_learning_rate_is_warned_about(tmp_path: Path, base_models_dir: Path) -> None:
    messages: list = []
    result = run_training(job_for(tmp_path, base_models_dir, "lora", epochs=1, learning_rate=2e-5,
                                  lora={"enabled": True}), messages.append, lambda: False)
    warnings = [m.message for m in messages if m.type == "warning"]
    assert warnings == ["learning_rate 2e-05 is low for LoRA, whose adapters usually need 1e-4 to 1e-3; "
                        "the model may barely change"]
    assert result.metrics["lora"] is True
    full = run_training(job_for(tmp_path, base_models_dir, "full", epochs=1), lambda _: None, lambda: False)
    assert full.metrics["lora"] is False
    assert full.metrics["trainable_parameters"] == full.metrics["total_parameters"]
    assert result.metrics["trainable_parameters"] < full.metrics["trainable_parameters"] / 10


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_compiled_model_traces_as_one_graph(base_models_dir: Path, lora: bool) -> None:
    import torch
    import torch._dynamo
    from transformers import AutoModelForSequenceClassification

    from bertd.training.lora import wrap_with_lora
    from bertd.training.setup import prepare_forward

    def fresh_model() -> torch.nn.Module:
        model = AutoModelForSequenceClassification.from_pretrained(base_models_dir / TINY_MODEL, num_labels=3,
                                                                   attn_implementation="sdpa")
        if lora:
            model = wrap_with_lora(model, LoraSettings(r=4, lora_alpha=8, lora_dropout=0.1,
                                                       target_modules=("query", "value")))
        return model.train()

    cpu = torch.device("cpu")
    plain = fresh_model()
    assert prepare_forward(plain, cpu, "off", 10, seed=1)[1:] == (False, True)  # eager: NumPy dropout
    model = fresh_model()
    forward, compiled, numpy_dropout = prepare_forward(model, cpu, "on", 10, seed=1)
    assert compiled and not numpy_dropout and forward is not model
    # Tracing only (no code generation): a graph break would cost the compiled path its speed.
    input_ids = torch.randint(5, 60, (4, 16))
    try:
        explanation = torch._dynamo.explain(model)(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    finally:
        torch._dynamo.reset()
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons


def training_progress(messages: list) -> list:
    return [m for m in messages if m.type == "progress" and getattr(m, "phase", None) == "training"]


def test_accumulation_and_warmup_shape_the_steps_and_learning_rate(tmp_path: Path, base_models_dir: Path) -> None:
    plain: list = []
    run_training(job_for(tmp_path, base_models_dir, "plain", epochs=2), plain.append, lambda: False)
    rates = [m.learning_rate for m in training_progress(plain)]
    assert training_progress(plain)[-1].total_steps == 18  # 72 rows / batch 8 = 9 steps an epoch
    assert rates == sorted(rates, reverse=True) and rates[0] == pytest.approx(3e-3 * 17 / 18)  # linear decay

    accumulated: list = []
    run_training(job_for(tmp_path, base_models_dir, "accumulated", epochs=2, gradient_accumulation_steps=3),
                 accumulated.append, lambda: False)
    assert training_progress(accumulated)[-1].total_steps == 6  # 9 batches, 3 per optimiser step

    warm: list = []
    run_training(job_for(tmp_path, base_models_dir, "warm", epochs=2, warmup_ratio=0.5), warm.append, lambda: False)
    rates = [m.learning_rate for m in training_progress(warm)]
    peak = rates.index(max(rates))
    assert rates[0] == pytest.approx(3e-3 * 2 / 9)  # 9 warm-up steps; the rate reported is the next step's
    assert rates[: peak + 1] == sorted(rates[: peak + 1]) and rates[peak:] == sorted(rates[peak:], reverse=True)
    assert max(rates) == pytest.approx(3e-3) and peak == 7


def test_weight_decay_spares_biases_and_layer_norms(base_models_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from bertd.training.setup import optimizer_for

    model = AutoModelForSequenceClassification.from_pretrained(base_models_dir / TINY_MODEL, num_labels=3)
    optimizer = optimizer_for(model, Hyperparameters(weight_decay=0.3, learning_rate=1e-3))
    decayed, spared = optimizer.param_groups
    assert decayed["weight_decay"] == 0.3 and spared["weight_decay"] == 0.0
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    assert all(parameter.ndim == 2 for parameter in decayed["params"])
    spared_names = {names[id(parameter)] for parameter in spared["params"]}
    assert "bert.embeddings.LayerNorm.weight" in spared_names and "classifier.bias" in spared_names
    assert len(decayed["params"]) + len(spared["params"]) == len(list(model.parameters()))


def test_gradient_clipping_changes_the_updates(tmp_path: Path, base_models_dir: Path) -> None:
    unclipped = run_training(job_for(tmp_path, base_models_dir, "n0", epochs=1, max_grad_norm=0), lambda _: None,
                             lambda: False)
    again = run_training(job_for(tmp_path, base_models_dir, "n0b", epochs=1, max_grad_norm=0), lambda _: None,
                         lambda: False)
    clipped = run_training(job_for(tmp_path, base_models_dir, "n1", epochs=1, max_grad_norm=1e-6), lambda _: None,
                           lambda: False)
    assert unclipped.metrics["history"] == again.metrics["history"]
    assert clipped.metrics["history"][0]["train_loss"] != unclipped.metrics["history"][0]["train_loss"]


def test_early_stopping_min_delta_counts_small_gains_as_none(tmp_path: Path, base_models_dir: Path) -> None:
    settings = {"epochs": 5, "early_stopping_enabled": True, "early_stopping_patience": 1,
                "early_stopping_metric": "val_accuracy"}
    eager = run_training(job_for(tmp_path, base_models_dir, "d0", **settings), lambda _: None, lambda: False)
    assert len(eager.metrics["history"]) > 2  # accuracy keeps rising at first
    # No accuracy gain can exceed 1.0, so the second epoch never counts as an improvement.
    strict = run_training(job_for(tmp_path, base_models_dir, "d1", early_stopping_min_delta=1.0, **settings),
                          lambda _: None, lambda: False)
    assert len(strict.metrics["history"]) == 2


def test_precision_override_on_the_cpu(tmp_path: Path, base_models_dir: Path) -> None:
    from safetensors.torch import load_file

    bf16 = run_training(job_for(tmp_path, base_models_dir, "bf16", epochs=1, precision="bf16"), lambda _: None,
                        lambda: False)
    assert bf16.metrics["precision"] == "bfloat16"
    # Autocast computes in bf16; the weights, and so the saved model, stay fp32.
    saved = load_file(Path(bf16.artifacts.model_path) / "model.safetensors")
    assert {str(tensor.dtype) for tensor in saved.values()} == {"torch.float32"}
    messages: list = []
    fp16 = run_training(job_for(tmp_path, base_models_dir, "fp16", epochs=1, precision="fp16"), messages.append,
                        lambda: False)
    assert fp16.metrics["precision"] == "fp32"
    assert [m.message for m in messages if m.type == "warning"] == [
        "precision fp16 needs a GPU; training in fp32 on the CPU"]
    auto = run_training(job_for(tmp_path, base_models_dir, "auto", epochs=1), lambda _: None, lambda: False)
    assert auto.metrics["precision"] == "fp32"  # auto keeps the CPU in fp32: bf16 changes the numbers


def test_the_best_evaluation_is_by_macro_f1_then_lower_loss() -> None:
    import torch

    from bertd.training.evaluation import BestSoFar

    model = torch.nn.Linear(2, 2)
    frozen = torch.nn.Linear(2, 2)
    frozen.weight.requires_grad_(False)
    model.add_module("frozen", frozen)
    best = BestSoFar()

    def offer(epoch: int, macro_f1: float, loss: float) -> bool:
        evaluation = {"macro_f1": macro_f1, "loss": loss, "per_class": {}, "confusion_matrix": []}
        return best.offer({"epoch": epoch, "val_macro_f1": macro_f1, "val_loss": loss}, evaluation, model)

    assert [offer(1, 0.8, 0.9), offer(2, 1.0, 0.5), offer(3, 1.0, 0.6), offer(4, 1.0, 0.3), offer(5, 0.9, 0.1)] == [
        True, True, False, True, False]
    assert best.entry is not None and best.entry["epoch"] == 4
    # Only what training changes is copied: the frozen weight is left out, its bias is not.
    assert set(best.state) == {"weight", "bias", "frozen.bias"}


def test_train_val_split_zero_trains_on_every_row_and_saves_the_last_epoch(tmp_path: Path,
                                                                          base_models_dir: Path) -> None:
    messages: list = []
    result = run_training(job_for(tmp_path, base_models_dir, "all", train_val_split=0, epochs=2), messages.append,
                          lambda: False)
    metrics = result.metrics
    assert (metrics["train_rows"], metrics["validation_rows"]) == (90, 0)
    assert metrics["model_selection"] == "last_epoch" and metrics["best_epoch"] == 2
    assert (metrics["val_accuracy"], metrics["val_macro_f1"], metrics["val_loss"]) == (None, None, None)
    assert (metrics["per_class"], metrics["confusion_matrix"]) == ({}, [])
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 2]
    assert all(entry["val_accuracy"] is None and entry["train_loss"] > 0 for entry in metrics["history"])
    epochs = [m for m in messages if m.type == "epoch"]
    assert [(m.epoch, m.val_accuracy, m.is_best) for m in epochs] == [(1, None, True), (2, None, True)]
    warnings = [m.message for m in messages if m.type == "warning"]
    assert ("train_val_split is 0 and there is no validation_data_file: training on all 90 rows without validation "
            "metrics; the last epoch is saved") in warnings
    progress = [m for m in messages if m.type == "progress" and getattr(m, "phase", None) == "training"]
    assert progress[-1].step == progress[-1].total_steps == 2 * 12  # 90 rows / batch 8

    # The saved model is the last epoch's weights, a plain model that loads and predicts.
    from transformers import pipeline

    classifier = pipeline("text-classification", model=result.artifacts.model_path)
    assert classifier("工厂烟囱排放化工废气。")[0]["label"] in metrics["labels"]
