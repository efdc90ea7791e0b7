"""A prediction job: every row of one sheet through a completed task's model, written back as the same
file with prediction columns appended. Runs in a worker process and reads top to bottom: read the
sheet, load the model, tokenise every text, predict in batches, write the file.

Where the speed comes from, compared with `pipeline("text-classification")` over a column: the
fast tokenizer encodes thousands of texts per call instead of one, each long one cut near
max_length first where the cut cannot change its ids (text_prefix.py); rows are sorted by length, so a
batch is padded only to its own longest text and holds about as many tokens as the budget allows;
`inference_mode` skips autograd's bookkeeping; the last encoder layer is computed for the [CLS]
token alone, the only one the classifier reads (first_token.py); torch uses the threads of the
job's slot; a GPU runs in bf16 autocast. Scores are the softmax of the logits in fp32, as the pipeline's are."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

# Imported at module level, so a spare worker has done it before a job arrives.
import transformers.models.bert.modeling_bert  # noqa: F401
from loguru import logger
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bertd.i18n import Text
from bertd.protocol import (
    Interruption,
    PredictionCompleted,
    PredictionJob,
    PredictionPhase,
    PredictionProgress,
    Report,
    ShouldStop,
    TrainingInputError,
    TrainingStopped,
)
from bertd.sheets import SheetError
from bertd.training.first_token import first_token_only
from bertd.training.result_sheet import InputSheet, RowCells, read_input
from bertd.training.text_prefix import cut_text, is_bert_wordpiece

# Tokens (rows x padded length) per forward pass. On the CPU a few thousand keep the matrix
# products efficient and the activations in cache; a GPU wants far more work per launch.
CPU_TOKENS_PER_BATCH = 4096
GPU_TOKENS_PER_BATCH = 65536
MAX_ROWS_PER_BATCH = 1024
TOKENIZE_CHUNK = 8192  # texts per tokenizer call: a stop is noticed between chunks


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: Any
    labels: list[str]
    device: torch.device
    autocast_dtype: torch.dtype | None


def output_columns(top_k: int, existing: list[str]) -> list[str]:
    """predicted_label, predicted_score, then predicted_label_2, predicted_score_2 ... up to top_k;
    when the sheet has a column of one of these names already (say, a file bertd predicted before),
    all of them get the first suffix ".1", ".2" ... that clashes with nothing."""
    names = ["predicted_label", "predicted_score"]
    for rank in range(2, top_k + 1):
        names += [f"predicted_label_{rank}", f"predicted_score_{rank}"]
    taken = set(existing)
    suffix = 0
    while any((f"{name}.{suffix}" if suffix else name) in taken for name in names):
        suffix += 1
    return [f"{name}.{suffix}" if suffix else name for name in names]


def load_model(job: PredictionJob) -> LoadedModel:
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model_dir = Path(job.model_dir)
    if not (model_dir / "config.json").is_file():
        raise TrainingInputError(Text("the model of task {task_id} is no longer on disk ({path})", task_id=job.task_id,
                                      path=str(model_dir)))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not getattr(tokenizer, "is_fast", False):
        raise TrainingInputError(Text("the model of task {task_id} has no fast tokenizer (tokenizer.json)",
                                      task_id=job.task_id))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="sdpa")
    model.eval()
    device = torch.device(job.device) if job.device and torch.cuda.is_available() else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    autocast_dtype = None
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif job.cpu_threads:
        torch.set_num_threads(job.cpu_threads)
    model.to(device)
    first_token_only(model, device)
    labels = [str(model.config.id2label[index]) for index in range(model.config.num_labels)]
    return LoadedModel(model, tokenizer, labels, device, autocast_dtype)


def tokenize(tokenizer: Any, texts: list[str], max_length: int, should_stop: ShouldStop) -> list[list[int]]:
    """Token ids of every text, truncated to max_length as in training, without padding. A long text
    is cut first where that cannot change its ids (text_prefix.py), and tokenised whole only if the
    cut one falls short of max_length."""

    def encode(batch: list[str]) -> list[list[int]]:
        return tokenizer(batch, truncation=True, max_length=max_length, padding=False, return_attention_mask=False,
                         return_token_type_ids=False)["input_ids"]

    cuttable = is_bert_wordpiece(tokenizer)
    ids: list[list[int]] = []
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        if should_stop() is not None:
            raise TrainingStopped()
        chunk = texts[start : start + TOKENIZE_CHUNK]
        cuts = [cut_text(text, max_length) for text in chunk] if cuttable else [None] * len(chunk)
        encoded = encode([text if cut is None else cut for text, cut in zip(chunk, cuts, strict=True)])
        short = [row for row, cut in enumerate(cuts) if cut is not None and len(encoded[row]) < max_length]
        if short:
            for row, whole in zip(short, encode([chunk[row] for row in short]), strict=True):
                encoded[row] = whole
        ids.extend(encoded)
    return ids


def length_batches(lengths: np.ndarray, tokens_per_batch: int) -> list[np.ndarray]:
    """Row indices, longest first, cut into batches of at most `tokens_per_batch` padded tokens:
    each batch is padded only to its own first (longest) row. Longest first, so a job that does not
    fit in memory fails at once rather than at the end."""
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        width = max(1, int(lengths[order[start]]))
        rows = max(1, min(MAX_ROWS_PER_BATCH, tokens_per_batch // width))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def padded(ids: list[list[int]], rows: np.ndarray, pad_id: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The batch's input ids padded to its longest row, and its attention mask (None: no padding)."""
    lengths = [len(ids[row]) for row in rows]
    width = max(lengths)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    for position, row in enumerate(rows):
        input_ids[position, : lengths[position]] = ids[row]
    if min(lengths) == width:
        return torch.from_numpy(input_ids), None
    mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def predict_ids(loaded: LoadedModel, ids: list[list[int]], top_k: int, should_stop: ShouldStop,
                progress: Callable[[int], None]) -> tuple[np.ndarray, np.ndarray]:
    """(label indices, scores), each rows x top_k, best first, in the order of `ids`."""
    indices = np.zeros((len(ids), top_k), dtype=np.int64)
    scores = np.zeros((len(ids), top_k), dtype=np.float32)
    device, model = loaded.device, loaded.model
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    budget = GPU_TOKENS_PER_BATCH if device.type == "cuda" else CPU_TOKENS_PER_BATCH
    done = 0
    with torch.inference_mode():
        for rows in length_batches(np.array([len(row) for row in ids]), budget):
            if should_stop() is not None:  # a pause means a stop here: a prediction job has no checkpoint
                raise TrainingStopped()
            input_ids, mask = padded(ids, rows, pad_id)
            if device.type == "cuda":
                input_ids = input_ids.pin_memory().to(device, non_blocking=True)
                mask = mask.pin_memory().to(device, non_blocking=True) if mask is not None else None
            with torch.autocast(device.type, dtype=loaded.autocast_dtype or torch.float32,
                                enabled=loaded.autocast_dtype is not None):
                logits = model(input_ids=input_ids, attention_mask=mask).logits
            best = torch.topk(torch.softmax(logits.float(), dim=-1), top_k, dim=-1)
            indices[rows] = best.indices.cpu().numpy()
            scores[rows] = best.values.cpu().numpy()
            done += len(rows)
            progress(done)
    return indices, scores


def result_cells(sheet: InputSheet, predicted: list[int], indices: np.ndarray, scores: np.ndarray,
                 labels: list[str], threshold: float | None) -> tuple[list[RowCells], dict[str, int], int]:
    """Each data row's new cells (label, score per rank; a label under the threshold left empty),
    the rows per best label, and how many rows' best label fell under the threshold."""
    cells: list[RowCells] = [None] * len(sheet.texts)
    counts = dict.fromkeys(labels, 0)
    below = 0
    for position, row in enumerate(predicted):
        row_cells: list[Any] = []
        for rank in range(indices.shape[1]):
            score = round(float(scores[position, rank]), 6)
            label = labels[indices[position, rank]] if threshold is None or score >= threshold else None
            row_cells += [label, score]
        if row_cells[0] is None:
            below += 1
        else:
            counts[row_cells[0]] += 1
        cells[row] = row_cells
    return cells, counts, below


def run_prediction(job: PredictionJob, report: Report, should_stop: ShouldStop) -> PredictionCompleted:
    started = time.perf_counter()
    report(PredictionProgress(phase=PredictionPhase.READING))
    try:
        sheet = read_input(Path(job.input_path), job.input_name, job.sheet_name, job.text_column)
    except SheetError as error:
        raise TrainingInputError(error.text, code=error.code) from error
    predicted = [row for row, text in enumerate(sheet.texts) if text is not None]
    total, empty = len(sheet.texts), len(sheet.texts) - len(predicted)
    report(PredictionProgress(phase=PredictionPhase.LOADING_MODEL, rows_done=0, rows_total=total))
    loaded = load_model(job)
    if job.top_k > len(loaded.labels):
        raise TrainingInputError(Text("top_k {top_k} is more than the model's {count} labels", top_k=job.top_k,
                                      count=len(loaded.labels)))

    if should_stop() == Interruption.STOP:
        raise TrainingStopped()
    report(PredictionProgress(phase=PredictionPhase.PREDICTING, rows_done=empty, rows_total=total))
    predicting_since = time.perf_counter()
    last_report = predicting_since

    def progress(done: int) -> None:
        nonlocal last_report
        now = time.perf_counter()
        if now - last_report >= job.report_interval:
            last_report = now
            report(PredictionProgress(phase=PredictionPhase.PREDICTING, rows_done=empty + done, rows_total=total,
                                      rows_per_second=round(done / max(now - predicting_since, 1e-9), 1)))

    ids = tokenize(loaded.tokenizer, [sheet.texts[row] for row in predicted], job.max_length, should_stop)
    indices, scores = predict_ids(loaded, ids, job.top_k, should_stop, progress)
    predicting_seconds = time.perf_counter() - predicting_since
    speed = round(len(predicted) / predicting_seconds, 1) if predicted and predicting_seconds > 0 else None

    report(PredictionProgress(phase=PredictionPhase.WRITING, rows_done=total, rows_total=total,
                              rows_per_second=speed))
    columns = output_columns(job.top_k, sheet.columns)
    cells, counts, below = result_cells(sheet, predicted, indices, scores, loaded.labels, job.threshold)
    if should_stop() == Interruption.STOP:
        raise TrainingStopped()
    sheet.write(columns, cells, Path(job.output_path))
    seconds = time.perf_counter() - started
    logger.info("prediction {} of task {}: {} rows of sheet {!r} ({} empty) in {:.1f} s on {} ({} rows/s predicting)",
                job.prediction_id, job.task_id, total, sheet.name, empty, seconds, loaded.device, speed)
    return PredictionCompleted(rows_total=total, rows_empty=empty, rows_below_threshold=below, label_counts=counts,
                               columns=columns, output_path=job.output_path, seconds=round(seconds, 3),
                               rows_per_second=speed)
