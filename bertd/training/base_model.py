"""Finding a base model on disk: BASE_MODELS_DIR first, then the local Hugging Face cache."""

from __future__ import annotations

from pathlib import Path

from bertd.protocol import TrainingInputError


def resolve_base_model(name: str, base_models_dir: Path) -> Path:
    """The directory holding the base model's config, weights and tokenizer. Never downloads."""
    local = base_models_dir / name
    if (local / "config.json").is_file():
        return local
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception as error:  # not cached, malformed id, or offline mode refusing to look
        cache = constants.HF_HUB_CACHE
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TrainingInputError(
            f"base model {name!r} not found: looked for {local}/config.json and for the hub id "
            f"{name!r} in the Hugging Face cache {cache} ({reason}); put the model in BASE_MODELS_DIR "
            f"or download it into the cache first"
        ) from error
