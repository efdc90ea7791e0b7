"""Reading uploaded .xlsx/.csv files with pandas: sheet metadata at upload, tables for training."""

from __future__ import annotations

import importlib.util
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertd.i18n import Text

if TYPE_CHECKING:
    import pandas as pd

SUPPORTED_SUFFIXES = (".xlsx", ".csv")
# Excel exports from Chinese-locale Windows are often GB18030 rather than UTF-8.
CSV_ENCODINGS = ("utf-8-sig", "gb18030")
EXCEL_ENGINE = "calamine" if importlib.util.find_spec("python_calamine") else "openpyxl"


# Bounds for what one upload may inflate to; real training sheets are far below them.
MAX_INFLATED_BYTES = 1 << 30
MAX_COMPRESSION_RATIO = 200
MAX_ROWS = 2_000_000
DIMENSION = re.compile(r'<dimension ref="[A-Z]+\d+(?::[A-Z]+(\d+))?"')


@dataclass(frozen=True)
class SheetInfo:
    """One sheet of an uploaded file: its name, data rows and column names."""

    name: str
    rows: int
    columns: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "columns": list(self.columns)}


class SheetError(ValueError):
    """The file, sheet or column cannot be read as the user asked; the message says why, and
    `code` whether the sheet is missing (sheet_missing) or the file unreadable (file_unreadable)."""

    def __init__(self, message: Text, code: str = "file_unreadable") -> None:
        super().__init__(str(message))
        self.text = message
        self.code = code


def _read_csv(path: Path, **options: object) -> pd.DataFrame:
    # pandas is imported on first use: the records that name SheetInfo are imported by the CLI too.
    import pandas as pd

    last_error: Exception | None = None
    for encoding in CSV_ENCODINGS:
        try:
            return pd.read_csv(path, encoding=encoding, dtype=str, keep_default_na=False, **options)
        except UnicodeDecodeError as error:
            last_error = error
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise SheetError(Text("{name} is not a readable CSV file: {error}", name=path.name,
                                  error=str(error))) from error
    raise SheetError(Text("{name} is neither UTF-8 nor GB18030 text: {error}", name=path.name, error=str(last_error)))


def decode_csv(raw: bytes, name: str) -> tuple[str, str]:
    """(encoding, text) of a CSV file's bytes, tried in the order `_read_csv` tries them; the
    encoding is "utf-8-sig" only when the file starts with a byte order mark, so writing the text
    back in it gives the same bytes there."""
    last_error: Exception | None = None
    for encoding in CSV_ENCODINGS:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as error:
            last_error = error
            continue
        if encoding == "utf-8-sig" and not raw.startswith(b"\xef\xbb\xbf"):
            encoding = "utf-8"
        return encoding, text
    raise SheetError(f"{name} is neither UTF-8 nor GB18030 text: {last_error}")


def column_names(header: list[object]) -> list[str]:
    """A header row's column names as pandas gives them: an empty cell is "Unnamed: <position>", a
    whole number stays whole (2024, not 2024.0), a repeated name gets ".1", ".2" ..."""
    names = []
    for position, value in enumerate(header):
        if value is None or (isinstance(value, str) and value == ""):
            names.append(f"Unnamed: {position}")
        elif isinstance(value, float) and value.is_integer():
            names.append(str(int(value)))
        else:
            names.append(str(value))
    # pandas' own de-duplication (pandas.io.common.mangle_dupe_names), so a name the user picked from
    # the upload's metadata is found: a mangled name already in the header is skipped.
    counts: dict[str, int] = {}
    for index, original in enumerate(list(names)):
        name, count = original, counts.get(original, 0)
        while count > 0:
            counts[original] = count + 1
            name = f"{original}.{count}"
            count = count + 1 if name in names else counts.get(name, 0)
        names[index] = name
        counts[name] = count + 1
    return names


def check_workbook_archive(path: Path, name: str) -> None:
    """Refuse a zip bomb before any parser inflates it: bound the uncompressed size, the
    compression ratio and the declared rows of every sheet."""
    if not zipfile.is_zipfile(path):
        raise SheetError(Text("{name} is not a readable .xlsx workbook (not a zip archive)", name=name))
    with zipfile.ZipFile(path) as archive:
        entries = archive.infolist()
        inflated = sum(entry.file_size for entry in entries)
        packed = max(1, sum(entry.compress_size for entry in entries))
        if inflated > MAX_INFLATED_BYTES:
            raise SheetError(Text("{name} would inflate to {size} MB, more than the {limit} MB bertd reads from "
                                  "one workbook", name=name, size=inflated >> 20, limit=MAX_INFLATED_BYTES >> 20))
        if inflated > 10 * packed and inflated / packed > MAX_COMPRESSION_RATIO:
            raise SheetError(Text("{name} is compressed {ratio}:1, which only a zip bomb is; refusing it", name=name,
                                  ratio=inflated // packed))
        for entry in entries:
            if entry.filename.startswith("xl/worksheets/") and entry.filename.endswith(".xml"):
                with archive.open(entry) as sheet:
                    head = sheet.read(4096).decode("utf-8", "replace")
                match = DIMENSION.search(head)
                if match and int(match.group(1)) > MAX_ROWS:
                    raise SheetError(Text("{name} declares {rows:,} rows in {entry}; bertd reads at most {limit:,}",
                                          name=name, rows=int(match.group(1)), entry=entry.filename, limit=MAX_ROWS))


def _read_excel(path: Path, sheet_name: str | None, *, all_sheets: bool = False) -> dict[str, pd.DataFrame]:
    """The requested sheet (None: the first), or every sheet, keyed by sheet name."""
    import pandas as pd

    check_workbook_archive(path, path.name)
    try:
        with pd.ExcelFile(path, engine=EXCEL_ENGINE) as workbook:
            names = [str(name) for name in workbook.sheet_names]
            if not names:
                raise SheetError(Text("{name} has no sheets", name=path.name))
            if all_sheets:
                wanted = names
            elif sheet_name is None:
                wanted = names[:1]
            elif sheet_name in names:
                wanted = [sheet_name]
            else:
                raise SheetError(Text("sheet {sheet!r} not found in {name}; sheets are: {names}", sheet=sheet_name,
                                      name=path.name, names=", ".join(names)), "sheet_missing")
            return {name: pd.read_excel(workbook, sheet_name=name, dtype=str) for name in wanted}
    except SheetError:
        raise
    except Exception as error:  # openpyxl and calamine raise many types for broken workbooks
        raise SheetError(Text("{name} is not a readable .xlsx workbook: {error}", name=path.name,
                              error=str(error))) from error


def read_sheet_metadata(path: Path, filename: str | None = None) -> list[SheetInfo]:
    """Every sheet's name, data-row count and column names. `filename` is the name the user
    knows the file by (the upload may sit under a temporary name); a CSV's sheet is its stem."""
    if path.suffix.lower() == ".csv":
        frame = _read_csv(path)
        return [SheetInfo(Path(filename or path.name).stem, len(frame), [str(column) for column in frame.columns])]
    frames = _read_excel(path, None, all_sheets=True)
    return [
        SheetInfo(str(name), len(frame), [str(column) for column in frame.columns]) for name, frame in frames.items()
    ]


def read_table(path: Path, sheet_name: str | None) -> tuple[str, pd.DataFrame]:
    """One sheet as a frame of strings (None for an empty cell); sheet_name None is the first sheet."""
    if path.suffix.lower() == ".csv":
        if sheet_name not in (None, path.stem):
            raise SheetError(Text("sheet {sheet!r} not found in {name}; a CSV file has one sheet, {stem!r}",
                                  sheet=sheet_name, name=path.name, stem=path.stem), "sheet_missing")
        frame = _read_csv(path)
        frame = frame.replace("", None)
        name = path.stem
    else:
        name, frame = next(iter(_read_excel(path, sheet_name).items()))
    frame.columns = [str(column) for column in frame.columns]
    return str(name), frame
