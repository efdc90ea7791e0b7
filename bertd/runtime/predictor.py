"""Serving predictions from completed tasks' models: a small LRU cache, batched inference off the loop.

torch and transformers are imported in the background once the server is up, never on its start-up
path (see `import_libraries`). Inference runs
in a thread with few torch threads, so predictions never take the cores a training worker uses."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREDICT_BATCH = 32
PREDICT_THREADS = 1


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    labels: list[str]
    max_length: int
    lock: threading.Lock


def import_libraries() -> None:
    """torch and transformers' model classes: seconds of imports that the first prediction would
    otherwise wait through. The server runs this in a background thread after it starts."""
    import torch
    import transformers
    import transformers.models.bert.modeling_bert  # noqa: F401 - BERT is the common case
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: F401

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(PREDICT_THREADS)


def _load(model_dir: Path, max_length: int) -> LoadedModel:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertd.training.first_token import first_token_only

    import_libraries()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    model.eval()
    first_token_only(model, torch.device("cpu"))
    labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
    return LoadedModel(model, tokenizer, labels, max_length, threading.Lock())


def _predict(loaded: LoadedModel, texts: list[str], top_k: int) -> list[dict[str, Any]]:
    import torch

    predictions: list[dict[str, Any]] = []
    with loaded.lock, torch.inference_mode():
        for start in range(0, len(texts), PREDICT_BATCH):
            batch = loaded.tokenizer(texts[start : start + PREDICT_BATCH], truncation=True,
                                     max_length=loaded.max_length, padding=True, return_tensors="pt")
            probabilities = torch.softmax(loaded.model(**batch).logits.float(), dim=-1)
            for row in probabilities.tolist():
                ranked = sorted(zip(loaded.labels, row, strict=True), key=lambda pair: -pair[1])
                prediction: dict[str, Any] = {"label": ranked[0][0], "score": ranked[0][1],
                                              "scores": dict(zip(loaded.labels, row, strict=True))}
                if top_k > 1:
                    prediction["top_k"] = [{"label": label, "score": score} for label, score in ranked[:top_k]]
                predictions.append(prediction)
    return predictions


class ModelCache:
    """At most `size` models in memory, least recently used evicted first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._loading: dict[str, asyncio.Future[LoadedModel]] = {}

    async def get(self, task_id: str, model_dir: Path, max_length: int) -> LoadedModel:
        if task_id in self._models:
            self._models.move_to_end(task_id)
            return self._models[task_id]
        if task_id not in self._loading:  # one load per model, however many requests wait for it
            self._loading[task_id] = asyncio.ensure_future(asyncio.to_thread(_load, model_dir, max_length))
        try:
            loaded = await asyncio.shield(self._loading[task_id])
        finally:
            if self._loading.get(task_id) is not None and self._loading[task_id].done():
                self._loading.pop(task_id, None)
        self._models[task_id] = loaded
        while len(self._models) > self._size:
            self._models.popitem(last=False)
        return loaded

    async def warm_up(self) -> None:
        await asyncio.to_thread(import_libraries)

    def forget(self, task_id: str) -> None:
        self._models.pop(task_id, None)

    async def predict(self, task_id: str, model_dir: Path, max_length: int, texts: list[str], top_k: int
                      ) -> list[dict[str, Any]]:
        loaded = await self.get(task_id, model_dir, max_length)
        return await asyncio.to_thread(_predict, loaded, texts, top_k)
