"""Finding a base model on disk: BASE_MODELS_DIR first, then the local Hugging Face cache."""

from __future__ import annotations

from pathlib import Path

from bertd.i18n import Text
from bertd.protocol import TrainingInputError, add_base_model_hint


def resolve_base_model(name: str, base_models_dir: Path) -> Path:
    """The directory holding the base model's config, weights and tokenizer. Never downloads: the
    server has pulled a missing one before the task started (AUTO_DOWNLOAD_BASE_MODELS)."""
    local = base_models_dir / name
    if (local / "config.json").is_file():
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception as error:  # not cached, malformed id, or offline mode refusing to look
        raise TrainingInputError(
            Text("base model {name!r} is not on this server (not in {folder}, nor in the Hugging Face cache)",
                 name=name, folder=str(local)),
            code="base_model_missing", hint=add_base_model_hint(name),
        ) from error
