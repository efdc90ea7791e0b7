"""The compute devices this machine offers training."""

from __future__ import annotations

import os
import platform
from typing import Any


def detect_devices() -> list[dict[str, Any]]:
    """GPUs torch can use, then the CPU. Importing torch takes seconds: call it off the event loop."""
    import torch

    devices: list[dict[str, Any]] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            devices.append({
                "type": "cuda",
                "index": index,
                "name": properties.name,
                "memory_gib": round(properties.total_memory / 2**30, 1),
                "bf16": torch.cuda.is_bf16_supported(),
            })
    devices.append({"type": "cpu", "name": platform.processor() or platform.machine(), "cores": os.cpu_count()})
    return devices
