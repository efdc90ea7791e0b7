"""The compute devices this machine offers training, found without importing torch here.

The server process never needs torch for its own work (only online predict loads it, on first
use), and importing it costs seconds and hundreds of MB. So GPUs are counted by a short child
process, and only where an NVIDIA driver is present at all; a machine without one is the CPU."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")
PROBE_TIMEOUT_SECONDS = 120

# Run by the child process: every GPU torch can use, as JSON.
PROBE = """
import json, torch
found = []
if torch.cuda.is_available():
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        found.append({"type": "cuda", "index": index, "name": properties.name,
                      "memory_gib": round(properties.total_memory / 2**30, 1),
                      "bf16": torch.cuda.is_bf16_supported()})
print(json.dumps(found))
"""


def cpu_device() -> dict[str, Any]:
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "cores": os.cpu_count()}


def detect_gpus() -> list[dict[str, Any]]:
    """GPUs torch can use, asked of a child process; [] without an NVIDIA driver or on any failure.
    Blocks for the child's imports: call it off the event loop."""
    if not NVIDIA_DRIVER.exists() or os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return []
    try:
        result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                                timeout=PROBE_TIMEOUT_SECONDS, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return []


def detect_devices() -> list[dict[str, Any]]:
    """GPUs, then the CPU."""
    return [*detect_gpus(), cpu_device()]
