"""A stand-in Hugging Face Hub for tests: an aiohttp app that serves model repositories from local
folders over the routes the installed `huggingface_hub` (2.x) calls, so that base-model pulls run
offline against it with `HF_ENDPOINT` (or `endpoint=`) pointing at it.

Routes (repo ids with or without an organisation, e.g. `bert-base-chinese` and
`google-bert/bert-base-chinese`; revisions `main` or the repo's commit sha):

- `GET /api/models/{repo_id}` and `GET /api/models/{repo_id}/revision/{revision}`: model info with
  `id`, `sha` and `siblings` (with `size`, `blobId` and `lfs` when `?blobs=true`, as the Hub does);
- `GET /api/models/{repo_id}/tree/{revision}[/{path}]` (`?recursive=true`), used by
  `snapshot_download`;
- `POST /api/models/{repo_id}/paths-info/{revision}`, used by `get_paths_info`;
- `HEAD` and `GET /{repo_id}/resolve/{revision}/{path}` with `ETag`, `X-Repo-Commit`,
  `Content-Length`, `Accept-Ranges`, and for LFS files `X-Linked-Etag` / `X-Linked-Size`; a
  `Range: bytes=...` request is answered 206 with `Content-Range` (416 when unsatisfiable).

ModelScope's client (`modelscope_hub`, pointed at the stand-in with `MODELSCOPE_ENDPOINT` or
`HubApi(endpoint=...)`) is answered too: `GET /api/v1/models/{owner}/{name}/repo/files` (the file
listing with sizes and sha256) and `GET /api/v1/models/{owner}/{name}/repo?FilePath=...` (the file,
with the same Range support, counters and drops); other `/api/v1/` calls get a 404.

Errors carry the headers `huggingface_hub` turns into its exceptions: 404 with `X-Error-Code:
RepoNotFound` / `RevisionNotFound` / `EntryNotFound`, and with `token=` set, 401 for a request
without `Authorization: Bearer <token>` (`RepoNotFound`, as the Hub answers for a private repo) or
with a wrong one (`Invalid credentials in Authorization header`).

Test hooks on `HubStandin`: `drop_connection(path, after_bytes, times)` closes the connection in the
middle of the next `times` GETs of a file; `chunk_delay` sleeps between body chunks; `stats(repo,
path)` counts the HEADs, GETs, bytes sent, Range headers and drops per file; `requests` records
every request (method, path, Range and Authorization headers).

    async with run_hub_standin({"google-bert/bert-base-chinese": folder}) as hub:
        os.environ["HF_ENDPOINT"] = hub.url      # or pass endpoint=hub.url
        ...
        assert hub.stats("google-bert/bert-base-chinese", "model.safetensors").ranges == [None, "bytes=65536-"]

Only for tests and demos: it trusts its folders, keeps everything in one process and has no TLS.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from bertd.testing.hub_repos import DropRule, FileStats, Repo, RepoFile, RequestRecord, load_repo, parse_range


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class HubStandin:
    """The stand-in's state and hooks; `app` is the aiohttp application that serves it."""

    def __init__(
        self,
        repos: Mapping[str, Path],
        *,
        token: str | None = None,
        chunk_size: int = 64 * 1024,
        chunk_delay: float = 0.0,
    ) -> None:
        # Folders shared by several ids (with and without an organisation) are indexed once.
        indexed: dict[Path, Repo] = {}
        self.repos: dict[str, Repo] = {}
        for repo_id, folder in repos.items():
            key = Path(folder).resolve()
            if key not in indexed:
                indexed[key] = load_repo(repo_id, key)
            base = indexed[key]
            self.repos[repo_id] = Repo(repo_id, base.folder, base.sha, base.files)
        self.token = token
        self.chunk_size = chunk_size
        self.chunk_delay = chunk_delay
        self.requests: list[RequestRecord] = []
        self.url: str | None = None  # set by run_hub_standin
        self._stats: dict[tuple[str, str], FileStats] = {}
        self._drops: list[DropRule] = []
        self.app = web.Application()
        self.app[HUB_STANDIN] = self
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    # -- hooks -------------------------------------------------------------------------------

    def drop_connection(self, path: str, after_bytes: int, times: int = 1, repo_id: str | None = None) -> None:
        """Close the connection after `after_bytes` bytes of the body of the next `times` GETs of
        `path` (of any repo, or of `repo_id`), as a dropped network connection would."""
        self._drops.append(DropRule(repo_id, path, after_bytes, times))

    def stats(self, repo_id: str, path: str) -> FileStats:
        return self._stats.setdefault((repo_id, path), FileStats())

    def reset_counters(self) -> None:
        self.requests.clear()
        self._stats.clear()

    def commit_sha(self, repo_id: str) -> str:
        return self.repos[repo_id].sha

    # -- dispatch ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        self.requests.append(RequestRecord(
            request.method, unquote(raw_path), request.query_string,
            request.headers.get("Range"), request.headers.get("Authorization"),
        ))
        segments = [unquote(part) for part in raw_path.strip("/").split("/")]
        if len(segments) >= 4 and segments[:3] == ["api", "v1", "models"]:
            return await self._modelscope(request, segments[3:])
        if segments[:2] == ["api", "v1"]:  # other ModelScope calls (e.g. its region probe): not offered
            return self._modelscope_error(404, "not found")
        if len(segments) >= 3 and segments[0] == "api" and segments[1] == "models":
            return await self._api(request, segments[2:])
        if "resolve" in segments:
            return await self._resolve(request, segments)
        return self._error(404, None, f"no such route: {request.method} {raw_path}")

    def _match_repo(self, segments: list[str]) -> tuple[Repo | None, list[str]]:
        """The known repo whose id is the longest prefix of `segments`, and the segments after it."""
        for length in (2, 1):
            candidate = "/".join(segments[:length])
            if len(segments) >= length and candidate in self.repos:
                return self.repos[candidate], segments[length:]
        return None, segments

    def _error(self, status: int, code: str | None, message: str, repo: Repo | None = None) -> web.Response:
        headers = {"X-Error-Message": message}
        if code is not None:
            headers["X-Error-Code"] = code
        if repo is not None:
            headers["X-Repo-Commit"] = repo.sha
        return web.json_response({"error": message}, status=status, headers=headers)

    def _refused(self, request: web.Request) -> web.Response | None:
        """401 unless the request carries the stand-in's token (when it has one)."""
        if self.token is None:
            return None
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        if authorization != f"Bearer {self.token}":
            return self._error(401, None, "Invalid credentials in Authorization header")
        return None

    def _revision(self, repo: Repo, revision: str) -> bool:
        return revision in ("main", repo.sha)

    # -- /api/models/... ---------------------------------------------------------------------

    async def _api(self, request: web.Request, segments: list[str]) -> web.StreamResponse:
        repo, rest = self._match_repo(segments)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if (refused := self._refused(request)) is not None:
            return refused
        if not rest or rest[0] == "revision":
            if request.method != "GET":
                return self._error(405, None, "method not allowed")
            revision = rest[1] if len(rest) >= 2 else "main"
            if not self._revision(repo, revision):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", repo)
            return web.json_response(self._model_info(repo, _truthy(request.query.get("blobs"))))
        if rest[0] == "tree" and len(rest) >= 2:
            if not self._revision(repo, rest[1]):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rest[1]}", repo)
            return web.json_response(self._tree(repo, "/".join(rest[2:]), _truthy(request.query.get("recursive"))))
        if rest[0] == "paths-info" and len(rest) >= 2 and request.method == "POST":
            if not self._revision(repo, rest[1]):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rest[1]}", repo)
            form = await request.post()
            wanted = [str(value) for value in form.getall("paths", [])]
            return web.json_response(self._paths_info(repo, wanted))
        return self._error(404, None, f"no such route for {repo.repo_id}: {'/'.join(rest)}")

    def _model_info(self, repo: Repo, with_metadata: bool) -> dict[str, Any]:
        author = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
        return {
            "_id": repo.sha[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": author,
            "sha": repo.sha,
            "private": self.token is not None,
            "gated": False,
            "disabled": False,
            "library_name": "transformers",
            "tags": ["transformers", "safetensors", "bert"],
            "siblings": [repo_file.sibling(with_metadata) for repo_file in repo.files.values()],
        }

    def _tree(self, repo: Repo, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = prefix.strip("/")
        start = f"{prefix}/" if prefix else ""
        entries: list[dict[str, Any]] = []
        for folder in repo.folders():
            if folder.startswith(start) and (recursive or "/" not in folder[len(start):]):
                entries.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                "size": 0, "path": folder})
        for path, repo_file in repo.files.items():
            if path.startswith(start) and (recursive or "/" not in path[len(start):]):
                entries.append(repo_file.tree_entry())
        return entries

    def _paths_info(self, repo: Repo, paths: list[str]) -> list[dict[str, Any]]:
        folders = set(repo.folders())
        found: list[dict[str, Any]] = []
        for path in paths:
            path = path.strip("/")
            if path in repo.files:
                found.append(repo.files[path].tree_entry())
            elif path in folders:
                found.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0,
                              "path": path})
        return found

    # -- /{repo_id}/resolve/{revision}/{path} ------------------------------------------------

    async def _resolve(self, request: web.Request, segments: list[str]) -> web.StreamResponse:
        repo, rest = self._match_repo(segments)
        if repo is None or not rest or rest[0] != "resolve":
            return self._error(404, "RepoNotFound", "Repository not found")
        if (refused := self._refused(request)) is not None:
            return refused
        if request.method not in ("GET", "HEAD"):
            return self._error(405, None, "method not allowed")
        if len(rest) < 3:
            return self._error(404, "EntryNotFound", "Entry not found", repo)
        revision, path = rest[1], "/".join(rest[2:])
        if not self._revision(repo, revision):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", repo)
        repo_file = repo.files.get(path)
        if repo_file is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on \"{revision}\"", repo)
        return await self._serve_file(request, repo, repo_file)

    async def _serve_file(self, request: web.Request, repo: Repo, repo_file: RepoFile) -> web.StreamResponse:
        """HEAD or GET one file, honouring a single `Range: bytes=` range, counting and dropping as told."""
        path = repo_file.path
        stats = self.stats(repo.repo_id, path)
        headers = {
            "ETag": f'"{repo_file.etag}"',
            "X-Repo-Commit": repo.sha,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        if repo_file.lfs:
            headers["X-Linked-Etag"] = f'"{repo_file.sha256}"'
            headers["X-Linked-Size"] = str(repo_file.size)
        if request.method == "HEAD":
            stats.head_requests += 1
            headers["Content-Length"] = str(repo_file.size)
            return web.Response(status=200, headers=headers)

        stats.get_requests += 1
        range_header = request.headers.get("Range")
        stats.ranges.append(range_header)
        start, end, status = 0, repo_file.size - 1, 200
        if range_header is not None:
            parsed = parse_range(range_header, repo_file.size)
            if parsed is None:
                headers["Content-Range"] = f"bytes */{repo_file.size}"
                return web.Response(status=416, headers=headers)
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{repo_file.size}"
        length = end - start + 1
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = length
        await response.prepare(request)

        drop = self._take_drop(repo.repo_id, path)
        limit = length if drop is None else min(length, drop.after_bytes)
        sent = 0
        with repo_file.local_path.open("rb") as handle:
            handle.seek(start)
            while sent < limit:
                chunk = handle.read(min(self.chunk_size, limit - sent))
                if not chunk:
                    break
                await response.write(chunk)
                sent += len(chunk)
                stats.bytes_sent += len(chunk)
                if self.chunk_delay and sent < length:
                    await asyncio.sleep(self.chunk_delay)
        if drop is not None and sent < length:
            stats.drops += 1
            # What was written is flushed, then the socket closes with the body unfinished: the
            # client sees the peer close early, as on a dropped connection.
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response

    # -- ModelScope: /api/v1/models/{owner}/{name}/repo[/files] -------------------------------

    def _modelscope_error(self, status: int, message: str) -> web.Response:
        return web.json_response({"Code": status, "Message": message, "RequestId": "standin", "Success": False},
                                 status=status)

    async def _modelscope(self, request: web.Request, segments: list[str]) -> web.StreamResponse:
        """The calls of ModelScope's client (modelscope_hub) for a download: the file listing
        `GET .../repo/files?Revision=&Recursive=` and the file `GET .../repo?Revision=&FilePath=`.
        Revisions: `master` (ModelScope's default branch) or the repo's sha."""
        repo, rest = self._match_repo(segments)
        if repo is None:
            return self._modelscope_error(404, "model not found")
        if request.method not in ("GET", "HEAD"):
            return self._modelscope_error(405, "method not allowed")
        revision = request.query.get("Revision") or "master"
        if revision not in ("master", repo.sha):
            return self._modelscope_error(404, f"revision {revision} not found")
        if rest == ["repo", "files"]:
            root = (request.query.get("Root") or "").strip("/")
            recursive = _truthy(request.query.get("Recursive"))
            files = []
            for entry in self._tree(repo, root, recursive):
                is_file = entry["type"] == "file"
                repo_file = repo.files.get(entry["path"])
                files.append({
                    "Name": entry["path"].rsplit("/", 1)[-1], "Path": entry["path"], "Type": "blob" if is_file else "tree",
                    "Size": entry["size"], "Sha256": repo_file.sha256 if repo_file is not None else None,
                    "Revision": repo.sha, "IsLFS": bool(repo_file is not None and repo_file.lfs),
                })
            return web.json_response({"Code": 200, "Data": {"Files": files}, "Message": "success",
                                      "RequestId": "standin", "Success": True})
        if rest == ["repo"]:
            repo_file = repo.files.get((request.query.get("FilePath") or "").strip("/"))
            if repo_file is None:
                return self._modelscope_error(404, "file not found")
            return await self._serve_file(request, repo, repo_file)
        return self._modelscope_error(404, f"no such route for {repo.repo_id}: {'/'.join(rest)}")

    def _take_drop(self, repo_id: str, path: str) -> DropRule | None:
        for rule in self._drops:
            if rule.path == path and rule.remaining > 0 and rule.repo_id in (None, repo_id):
                rule.remaining -= 1
                return rule
        return None


HUB_STANDIN = web.AppKey("bertd_hub_standin", HubStandin)


def create_hub_app(
    repos: Mapping[str, Path],
    *,
    token: str | None = None,
    chunk_size: int = 64 * 1024,
    chunk_delay: float = 0.0,
) -> web.Application:
    """The stand-in Hub as an aiohttp application (for `aiohttp_server` or an `AppRunner`); its
    hooks and counters are `hub_standin(app)`."""
    return HubStandin(repos, token=token, chunk_size=chunk_size, chunk_delay=chunk_delay).app


def hub_standin(app: web.Application) -> HubStandin:
    """The hooks and counters of an app made by `create_hub_app`."""
    return app[HUB_STANDIN]


@asynccontextmanager
async def run_hub_standin(
    repos: Mapping[str, Path],
    *,
    host: str = "127.0.0.1",
    token: str | None = None,
    chunk_size: int = 64 * 1024,
    chunk_delay: float = 0.0,
) -> AsyncIterator[HubStandin]:
    """Serve a stand-in Hub on `host` at a free port for the duration of the block; `hub.url` is
    its endpoint (what HF_ENDPOINT should be)."""
    hub = HubStandin(repos, token=token, chunk_size=chunk_size, chunk_delay=chunk_delay)
    runner = web.AppRunner(hub.app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = runner.addresses[0][1]
        hub.url = f"http://{host}:{port}"
        yield hub
    finally:
        await runner.cleanup()

