"""Real bertd server processes for tests that kill, signal or starve them, and /proc helpers."""

from __future__ import annotations

from pathlib import Path

from bertd.testing.server_process import ServerProcess, free_port
from bertd.testing.server_process import start_server as start_server_process

__all__ = ["ServerProcess", "alive", "children_of", "free_port", "start_server", "stop_server"]


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_server(data_dir: Path, base_models_dir: Path, log_path: Path, preexec=None, **environment: str
                 ) -> ServerProcess:
    # A shorter stop grace than the default 30 s keeps shutdown tests quick.
    return start_server_process(data_dir, base_models_dir, log_path, preexec=preexec,
                                **{"STOP_GRACE_SECONDS": "10", **environment})


def stop_server(server: ServerProcess) -> None:
    server.stop()
