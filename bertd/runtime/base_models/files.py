"""Base models on disk: what a model folder holds (size, parameter count, shape), whether it is
complete enough to train from, and which folders of BASE_MODELS_DIR hold one.

Pure and cheap: no torch, no transformers model code, no aiohttp. Parameter counts come from the
safetensors headers (the JSON at the front of the file), read directly; the tokenizer is checked
with the `tokenizers` library (`from transformers import AutoTokenizer` imports torch in
transformers 5, which takes seconds).

Layout of BASE_MODELS_DIR: `<name>/` or `<org>/<name>/` (a hub id with its organisation, e.g.
`google-bert/bert-base-chinese`), each with a config.json; a download in progress lives in
`<name>.partial/` beside its final folder and is never listed."""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".partial"
# Written by base_model_download into the folder it completes: where the model came from.
SOURCE_FILE = ".bertd-source.json"
SOURCES = ("local", "huggingface", "modelscope")

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_FILE = "pytorch_model.bin"
PYTORCH_INDEX = "pytorch_model.bin.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                   "added_tokens.json")

# A safetensors header is a little-endian u64 length and that many bytes of JSON. The format caps
# it at 100 MB; a real BERT's is a few tens of KB.
MAX_SAFETENSORS_HEADER = 100_000_000
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}

# Hub ids: an optional organisation and a name, each of letters, digits, '-', '_' and '.', not
# starting with '-' or '.', without '--' or '..' (the Hub's own rule), at most 96 characters.
_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,95}$")


class BaseModelFileError(Exception):
    """A base model folder cannot be used; `path` is the missing or broken file (or the folder)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class BaseModelInfo:
    path: Path
    size_bytes: int  # all files in the folder, apparent sizes
    parameters: int | None  # from safetensors headers; None for pytorch_model.bin-only or unreadable weights
    hidden_size: int | None
    num_layers: int | None
    vocab_size: int | None
    model_type: str | None
    weights: tuple[str, ...]  # weight files found, relative to path ("model.safetensors", shards...)
    source: str  # "local" (put there by hand), "huggingface" or "modelscope" (pulled by bertd)
    repo_id: str | None  # for pulled models: the hub id
    revision: str | None  # for pulled models: the commit that was downloaded


@dataclass(frozen=True)
class LocalBaseModel:
    name: str  # what a training task names as base_model: "tiny-bert" or "google-bert/bert-base-chinese"
    path: Path


def validate_base_model_name(name: str) -> str:
    """`name` if it is a usable hub id / folder name (`name` or `org/name`); ValueError otherwise.
    Also what keeps a name from leaving BASE_MODELS_DIR."""
    if not isinstance(name, str) or not name:
        raise ValueError("a base model name must be a non-empty string such as 'google-bert/bert-base-chinese'")
    parts = name.split("/")
    if len(parts) > 2:
        raise ValueError(f"base model name {name!r} has more than one '/': use 'name' or 'organisation/name'")
    for part in parts:
        if not _NAME_PART.match(part) or part.endswith((".", "-")) or ".." in part or "--" in part:
            raise ValueError(
                f"base model name {name!r} is not a valid hub id: each part may use letters, digits, '-', '_' "
                f"and '.', must not start or end with '-' or '.', and has at most 96 characters"
            )
    if name.endswith(PARTIAL_SUFFIX):
        raise ValueError(f"base model name {name!r} must not end with {PARTIAL_SUFFIX!r}")
    return name


def base_model_path(base_models_dir: Path, name: str) -> Path:
    """Where the base model `name` lives: BASE_MODELS_DIR/<name> (nested for org/name)."""
    return Path(base_models_dir, *validate_base_model_name(name).split("/"))


def partial_path(base_models_dir: Path, name: str) -> Path:
    """Where a download of `name` is assembled: `<final folder>.partial`, beside the final folder."""
    final = base_model_path(base_models_dir, name)
    return final.with_name(final.name + PARTIAL_SUFFIX)


# -- config and weights ------------------------------------------------------------------------


def read_config(path: Path) -> dict[str, Any]:
    config_path = Path(path) / CONFIG_FILE
    if not config_path.is_file():
        raise BaseModelFileError(config_path, f"{config_path} is missing: a base model folder needs a config.json")
    return _read_json_object(config_path)


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaseModelFileError(path, f"{path} is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise BaseModelFileError(path, f"{path} is not a JSON object")
    return value


def _index_shards(index_path: Path) -> list[Path]:
    index = _read_json_object(index_path)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise BaseModelFileError(index_path, f"{index_path} has no weight_map")
    shards: list[str] = []
    for shard in weight_map.values():
        if not isinstance(shard, str) or "/" in shard or "\\" in shard or shard.startswith("."):
            raise BaseModelFileError(index_path, f"{index_path} names an invalid shard file {shard!r}")
        if shard not in shards:
            shards.append(shard)
    return [index_path.parent / shard for shard in shards]


def weight_files(path: Path) -> tuple[str, list[Path]]:
    """The weights a training run would load, in transformers' order of preference: ("safetensors",
    [model.safetensors] or its shards) or ("pytorch", [pytorch_model.bin] or its shards). Raises
    BaseModelFileError when there are none (TF, Flax or ONNX weights only do not count)."""
    path = Path(path)
    if (path / SAFETENSORS_FILE).is_file():
        return "safetensors", [path / SAFETENSORS_FILE]
    if (path / SAFETENSORS_INDEX).is_file():
        return "safetensors", _index_shards(path / SAFETENSORS_INDEX)
    if (path / PYTORCH_FILE).is_file():
        return "pytorch", [path / PYTORCH_FILE]
    if (path / PYTORCH_INDEX).is_file():
        return "pytorch", _index_shards(path / PYTORCH_INDEX)
    raise BaseModelFileError(
        path,
        f"{path} has no PyTorch weights: expected {SAFETENSORS_FILE}, {SAFETENSORS_INDEX} with its shards, "
        f"{PYTORCH_FILE} or {PYTORCH_INDEX}",
    )


def read_safetensors_header(file: Path) -> dict[str, Any]:
    """The tensors of a safetensors file (name -> {dtype, shape, data_offsets}), checked against
    the file: a truncated or padded file, or a header that does not parse, raises BaseModelFileError."""
    file = Path(file)
    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise BaseModelFileError(file, f"{file} is too short to be a safetensors file ({size} bytes)")
            (header_length,) = struct.unpack("<Q", prefix)
            if header_length > MAX_SAFETENSORS_HEADER or 8 + header_length > size:
                raise BaseModelFileError(
                    file, f"{file} is not a valid safetensors file: header length {header_length} does not fit "
                          f"its {size} bytes (truncated download?)")
            raw = handle.read(header_length)
    except OSError as error:
        raise BaseModelFileError(file, f"{file} cannot be read: {error}") from error
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaseModelFileError(file, f"{file} has a safetensors header that is not valid JSON: {error}") from error
    if not isinstance(header, dict):
        raise BaseModelFileError(file, f"{file} has a safetensors header that is not a JSON object")
    data_length = size - 8 - header_length
    tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
    end_of_data = 0
    for name, entry in tensors.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            valid = (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
                     and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end)
        except (KeyError, TypeError, ValueError):
            valid = False
        if not valid:
            raise BaseModelFileError(file, f"{file} has an invalid safetensors entry for tensor {name!r}")
        if dtype in DTYPE_BYTES and (end - begin) != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise BaseModelFileError(file, f"{file}: tensor {name!r} has {end - begin} bytes for shape {shape} {dtype}")
        end_of_data = max(end_of_data, end)
    if end_of_data != data_length:
        raise BaseModelFileError(
            file, f"{file} holds {data_length} bytes of tensor data but its header describes {end_of_data} "
                  f"({'truncated' if data_length < end_of_data else 'trailing bytes'}; an incomplete download?)")
    return tensors


def count_parameters(files: Iterable[Path]) -> int:
    """Elements of every tensor in these safetensors files."""
    return sum(math.prod(entry["shape"]) for file in files for entry in read_safetensors_header(file).values())


def read_source(path: Path) -> dict[str, Any]:
    """Where a pulled model came from (SOURCE_FILE), or {"source": "local"} for a folder put there by hand."""
    source_file = Path(path) / SOURCE_FILE
    try:
        source = json.loads(source_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {"source": "local"}
    if not isinstance(source, dict) or source.get("source") not in SOURCES:
        return {"source": "local"}
    return source


def _folder_size(path: Path) -> int:
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file():
                total += item.stat().st_size
        except OSError:
            continue
    return total


def _int_or_none(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def inspect_base_model(path: Path) -> BaseModelInfo:
    """What a base model folder holds. Raises BaseModelFileError only when config.json is missing
    or invalid; missing or unreadable weights give `parameters=None` (check_base_model says why)."""
    path = Path(path)
    config = read_config(path)
    parameters: int | None = None
    weights: tuple[str, ...] = ()
    try:
        kind, files = weight_files(path)
        weights = tuple(file.relative_to(path).as_posix() for file in files)
        if kind == "safetensors":
            parameters = count_parameters(files)
    except BaseModelFileError:
        parameters = None
    source = read_source(path)
    model_type = config.get("model_type")
    return BaseModelInfo(
        path=path,
        size_bytes=_folder_size(path),
        parameters=parameters,
        hidden_size=_int_or_none(config, "hidden_size", "dim", "d_model"),
        num_layers=_int_or_none(config, "num_hidden_layers", "n_layers", "num_layers"),
        vocab_size=_int_or_none(config, "vocab_size"),
        model_type=model_type if isinstance(model_type, str) else None,
        weights=weights,
        source=source["source"],
        repo_id=source.get("repo_id") if isinstance(source.get("repo_id"), str) else None,
        revision=source.get("revision") if isinstance(source.get("revision"), str) else None,
    )


# -- the whole check ---------------------------------------------------------------------------


def _check_pytorch_file(file: Path) -> None:
    if not file.is_file():
        raise BaseModelFileError(file, f"{file} is missing")
    size = file.stat().st_size
    if size == 0:
        raise BaseModelFileError(file, f"{file} is empty")
    # torch.save writes a zip archive (magic PK\x03\x04) since torch 1.6; older files are a pickle.
    with file.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04" and not magic.startswith(b"\x80"):
        raise BaseModelFileError(file, f"{file} is neither a torch zip archive nor a pickle")


def _load_tokenizer(path: Path, config: dict[str, Any]) -> Any:
    from tokenizers import Tokenizer

    tokenizer_json = path / "tokenizer.json"
    if tokenizer_json.is_file():
        try:
            return Tokenizer.from_file(str(tokenizer_json))
        except Exception as error:  # the Rust side raises plain Exceptions
            raise BaseModelFileError(tokenizer_json, f"{tokenizer_json} does not load: {error}") from error
    vocab = path / "vocab.txt"
    if vocab.is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        tokenizer_config = path / "tokenizer_config.json"
        lowercase = True
        if tokenizer_config.is_file():
            lowercase = bool(_read_json_object(tokenizer_config).get("do_lower_case", True))
        try:
            return BertWordPieceTokenizer(str(vocab), lowercase=lowercase)
        except Exception as error:
            raise BaseModelFileError(vocab, f"{vocab} does not load as a WordPiece vocabulary: {error}") from error
    raise BaseModelFileError(path, f"{path} has no tokenizer: expected tokenizer.json or vocab.txt")


def check_base_model(path: Path) -> None:
    """Raise BaseModelFileError, naming the file, unless the folder has a valid config.json,
    complete weights (safetensors headers parse and match the file sizes; a pytorch_model.bin is
    only checked for its format), JSON tokenizer side files that parse, and a tokenizer that loads
    and encodes with ids inside the embedding table."""
    path = Path(path)
    if not path.is_dir():
        raise BaseModelFileError(path, f"{path} is not a folder")
    config = read_config(path)
    kind, files = weight_files(path)
    for file in files:
        if not file.is_file():
            raise BaseModelFileError(file, f"{file} is missing (listed in the weights index)")
        if kind == "safetensors":
            read_safetensors_header(file)
        else:
            _check_pytorch_file(file)
    for name in ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
        if (path / name).is_file():
            _read_json_object(path / name)
    tokenizer = _load_tokenizer(path, config)
    try:
        tokenizer.encode("测试 bertd check")
    except Exception as error:
        raise BaseModelFileError(path, f"the tokenizer in {path} fails to encode text: {error}") from error
    vocab_size = _int_or_none(config, "vocab_size")
    vocabulary = tokenizer.get_vocab(with_added_tokens=True)
    if vocab_size is not None and vocabulary and max(vocabulary.values()) >= vocab_size:
        raise BaseModelFileError(
            path, f"the tokenizer in {path} has token ids up to {max(vocabulary.values())} but config.json's "
                  f"vocab_size is {vocab_size}: tokenizer and weights do not belong together")


# -- listing -----------------------------------------------------------------------------------


def _is_candidate(folder: Path) -> bool:
    return folder.is_dir() and not folder.name.startswith(".") and not folder.name.endswith(PARTIAL_SUFFIX)


def find_local_base_models(base_models_dir: Path) -> list[LocalBaseModel]:
    """Every folder of BASE_MODELS_DIR with a config.json, as `name` or `org/name` (one level of
    nesting, as hub ids have), sorted by name. Downloads in progress (`*.partial`) and hidden
    folders are left out; so is everything below a folder that is itself a model."""
    base_models_dir = Path(base_models_dir)
    if not base_models_dir.is_dir():
        return []
    found: list[LocalBaseModel] = []
    for folder in sorted(base_models_dir.iterdir()):
        if not _is_candidate(folder):
            continue
        if (folder / CONFIG_FILE).is_file():
            found.append(LocalBaseModel(folder.name, folder))
            continue
        for nested in sorted(folder.iterdir()):
            if _is_candidate(nested) and (nested / CONFIG_FILE).is_file():
                found.append(LocalBaseModel(f"{folder.name}/{nested.name}", nested))
    return sorted(found, key=lambda model: model.name)


def find_partial_downloads(base_models_dir: Path) -> list[str]:
    """Names with a `.partial` folder: downloads in progress or interrupted (a later pull resumes them)."""
    base_models_dir = Path(base_models_dir)
    if not base_models_dir.is_dir():
        return []
    names: list[str] = []
    for folder in sorted(base_models_dir.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        if folder.name.endswith(PARTIAL_SUFFIX):
            names.append(folder.name[: -len(PARTIAL_SUFFIX)])
        elif not (folder / CONFIG_FILE).is_file():
            names.extend(f"{folder.name}/{nested.name[: -len(PARTIAL_SUFFIX)]}" for nested in sorted(folder.iterdir())
                         if nested.is_dir() and nested.name.endswith(PARTIAL_SUFFIX))
    return names
