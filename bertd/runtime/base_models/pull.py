"""One pull's settings and shared state, as the hub clients (huggingface.py, modelscope.py) and the
retry loop (download.py) all see it; and the interface a hub client offers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bertd.runtime.base_models.hubs import (
    MODELSCOPE,
    BaseModelDownloadError,
    Cancelled,
    Transient,
    describe_hub,
    resolve_endpoint,
)
from bertd.runtime.base_models.partial import ByteProgress, PartialState, Plan, select_files

ShouldCancel = Callable[[], bool]


@dataclass
class Pull:
    name: str
    source: str
    revision: str
    base_models_dir: Path
    progress: ByteProgress
    endpoint: str
    token: str | None
    should_cancel: ShouldCancel
    retries: int
    backoff_seconds: float
    timeout: float | None
    # Set by a transfer that received bytes: a try that made progress resets the retry count.
    received_this_try: bool = field(default=False)

    @classmethod
    def create(cls, *, name: str, source: str, revision: str | None, base_models_dir: Path,
               progress: ByteProgress, endpoint: str | None, token: str | None, should_cancel: ShouldCancel,
               retries: int, backoff_seconds: float, timeout: float | None) -> Pull:
        return cls(
            name=name, source=source,
            revision=revision or ("master" if source == MODELSCOPE else "main"),  # each hub's default branch
            base_models_dir=base_models_dir, progress=progress, endpoint=resolve_endpoint(source, endpoint),
            token=token or os.environ.get("MODELSCOPE_API_TOKEN" if source == MODELSCOPE else "HF_TOKEN") or None,
            should_cancel=should_cancel, retries=max(retries, 0), backoff_seconds=max(backoff_seconds, 0.0),
            timeout=timeout,
        )

    def error(self, kind: str, reason: str, advice: str | None = None) -> BaseModelDownloadError:
        message = f"could not download {self.name!r} from {describe_hub(self.source, self.endpoint)}: {reason}"
        if advice:
            message += f"; {advice}"
        return BaseModelDownloadError(message, kind=kind, hub=self.source, endpoint=self.endpoint,
                                      repo_id=self.name, reason=reason, advice=advice)

    def check_cancel(self) -> None:
        if self.should_cancel():
            raise Cancelled()

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check_cancel()
            time.sleep(min(left, 0.1))

    def select(self, available: list[str]) -> list[str]:
        try:
            return select_files(available)
        except ValueError as error:
            raise self.error("not_a_model", str(error),
                             "pick a BERT-style model repository with config.json, a tokenizer and PyTorch weights") from None


class HubClient(Protocol):
    """What the retry loop needs of one hub's client."""

    def check_usable(self) -> None:
        """Raise BaseModelDownloadError when a pull cannot even begin (offline, library missing)."""

    def plan(self) -> Plan:
        """Resolve the revision and list the files to fetch, with sizes and hashes."""

    def fetch_all(self, partial: Path, plan: Plan, state: PartialState) -> None:
        """Bring every planned file to completion in the `.partial` folder, resuming what is there."""

    def classify(self, error: BaseException) -> BaseModelDownloadError | Transient:
        """A library error as the final error, or as a Transient worth another try; re-raises
        what it does not know."""

    def close(self) -> None:
        """Release what the client kept (scratch folders)."""
