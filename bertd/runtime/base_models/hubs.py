"""The hubs a base model can be pulled from, where each one is (read at call time), and how a pull
that did not complete is reported."""

from __future__ import annotations

import os

HUGGINGFACE = "huggingface"
MODELSCOPE = "modelscope"
DOWNLOAD_SOURCES = (HUGGINGFACE, MODELSCOPE)
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
HF_MIRROR_EXAMPLE = "https://hf-mirror.com"
DEFAULT_MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"


class BaseModelDownloadError(Exception):
    """A pull that did not complete. The message is one readable sentence naming the hub (with
    its endpoint), the repo id and the reason, then what to do; `reason` and `advice` are those two
    parts on their own. `kind` says which failure it was:

    invalid_name, unsupported_source, exists, busy, offline, not_found, gated, revision_not_found,
    unauthorized, forbidden, not_a_model, network, server, corrupt, broken, disk, cancelled.

    `retryable` is True where pulling again later may succeed (and resumes: the `.partial` folder
    is kept for network, server, corrupt, disk and cancelled)."""

    RETRYABLE_KINDS = frozenset({"busy", "network", "server", "corrupt", "disk", "cancelled"})

    def __init__(self, message: str, *, kind: str, hub: str, endpoint: str, repo_id: str,
                 reason: str | None = None, advice: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.hub = hub
        self.endpoint = endpoint
        self.repo_id = repo_id
        self.reason = reason or message
        self.advice = advice

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE_KINDS

    @property
    def what_failed(self) -> str:
        """The message without the advice: 'could not download X from <hub> at <endpoint>: <reason>'."""
        return f"could not download {self.repo_id!r} from {describe_hub(self.hub, self.endpoint)}: {self.reason}"


class Transient(Exception):
    """A failure worth another try, with the reason to report if the tries run out."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class Cancelled(BaseException):  # noqa: N818 - a signal, not an error
    """Raised from inside a transfer when `should_cancel()` says so. A BaseException, so that a
    client library's retry loop (`except Exception`) lets it through, as it does KeyboardInterrupt."""


def resolve_endpoint(source: str, endpoint: str | None = None) -> str:
    """The hub URL a pull from `source` uses: `endpoint`, else HF_ENDPOINT (MODELSCOPE_ENDPOINT for
    ModelScope), else the public hub. Read at call time."""
    if source == MODELSCOPE:
        domain = os.environ.get("MODELSCOPE_DOMAIN", "").strip()  # deprecated by ModelScope, still honoured
        chosen = (endpoint or os.environ.get("MODELSCOPE_ENDPOINT")
                  or (f"https://{domain}" if domain and "://" not in domain else domain) or DEFAULT_MODELSCOPE_ENDPOINT)
    else:
        chosen = endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT
    return chosen.strip().rstrip("/")


def hub_label(source: str) -> str:
    return "ModelScope" if source == MODELSCOPE else "the Hugging Face Hub"


def describe_hub(source: str, endpoint: str | None) -> str:
    return f"{hub_label(source)} at {endpoint}" if endpoint else hub_label(source)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
