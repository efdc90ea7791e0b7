"""How a value is stored in a `*_json` column, for every table: a pydantic model as its own JSON,
anything else through json.dumps with non-ASCII text kept as it is, None as NULL."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel


def json_column(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return None if value is None else json.dumps(value, ensure_ascii=False)
