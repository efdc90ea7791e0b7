"""The model repositories the stand-in hub serves (bertd/testing/hub_standin.py): files of a local
folder with the sizes, hashes and LFS pointers the Hub reports, what each request did, and the
`Range` header parsing both hubs' clients rely on."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertd.runtime.base_models.partial import git_blob_sha1, sha256_of

# Files the Hub keeps in Git LFS in a typical model repo (its .gitattributes); anything larger than
# LFS_SIZE_THRESHOLD is treated as LFS too.
LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx", ".ot", ".pt", ".pth", ".ckpt", ".model")
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
# A Git LFS pointer file is about this long; the Hub reports it as lfs.pointerSize.
LFS_POINTER_SIZE = 134
SKIPPED_DIRECTORIES = frozenset({".git", ".cache"})


@dataclass(frozen=True)
class RepoFile:
    path: str  # inside the repo, '/'-separated
    local_path: Path
    size: int
    blob_id: str  # the git blob sha1 (of the pointer file for LFS files, as on the Hub)
    sha256: str
    lfs: bool

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id

    def tree_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.blob_id, "size": self.size, "path": self.path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": LFS_POINTER_SIZE}
        return entry

    def sibling(self, with_metadata: bool) -> dict[str, Any]:
        sibling: dict[str, Any] = {"rfilename": self.path}
        if with_metadata:
            sibling["size"] = self.size
            sibling["blobId"] = self.blob_id
            if self.lfs:
                sibling["lfs"] = {"sha256": self.sha256, "size": self.size, "pointerSize": LFS_POINTER_SIZE}
        return sibling


@dataclass(frozen=True)
class Repo:
    repo_id: str
    folder: Path
    sha: str
    files: dict[str, RepoFile]

    def folders(self) -> list[str]:
        found = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                found.add("/".join(parts[:depth]))
        return sorted(found)


@dataclass
class FileStats:
    """What the stand-in served of one file of one repo."""

    head_requests: int = 0
    get_requests: int = 0
    bytes_sent: int = 0
    ranges: list[str | None] = field(default_factory=list)  # the Range header of each GET, None if absent
    drops: int = 0


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    range: str | None
    authorization: str | None


@dataclass
class DropRule:
    repo_id: str | None
    path: str
    after_bytes: int
    remaining: int


def _lfs_pointer_sha1(sha256: str, size: int) -> str:
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    return hashlib.sha1(f"blob {len(pointer)}\0".encode() + pointer).hexdigest()


def load_repo(repo_id: str, folder: Path) -> Repo:
    """Index a local folder as a repo: every file (hidden tool folders such as .cache skipped), with
    the sizes and hashes the Hub reports, and a commit sha derived from them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"stand-in repo {repo_id!r}: {folder} is not a folder")
    files: dict[str, RepoFile] = {}
    for local in sorted(folder.rglob("*")):
        relative = local.relative_to(folder)
        if not local.is_file() or SKIPPED_DIRECTORIES.intersection(relative.parts[:-1]):
            continue
        path = relative.as_posix()
        size = local.stat().st_size
        sha256 = sha256_of(local)
        lfs = path.endswith(LFS_SUFFIXES) or size > LFS_SIZE_THRESHOLD
        blob_id = _lfs_pointer_sha1(sha256, size) if lfs else git_blob_sha1(local, size)
        files[path] = RepoFile(path, local, size, blob_id, sha256, lfs)
    commit = hashlib.sha1(repo_id.encode())
    for path, repo_file in files.items():
        commit.update(f"{path}\0{repo_file.blob_id}\n".encode())
    return Repo(repo_id, folder, commit.hexdigest(), files)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single `bytes=` range, or None when it cannot be satisfied."""
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # suffix range: the last N bytes
        length = int(last)
        if length == 0:
            return None
        return max(size - length, 0), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or end < start:
        return None
    return start, end
