"""The sheet a prediction job reads, and the same file written back with prediction columns appended.

An .xlsx workbook is loaded whole with openpyxl and saved with cells added to the one sheet: every
other sheet, the order of the sheets, values, formulas and styles stay as openpyxl loaded them. A
.csv file is read and written with the csv module in its own encoding (UTF-8 with or without a byte
order mark, or GB18030) and line ending, every original field kept as it was. Rows are numbered as
pandas numbers them (bertd.sheets reads the uploads' metadata and the training data with pandas):
the header is the first row of the sheet (the first non-blank line of a CSV file), a blank row
inside an .xlsx sheet is a data row with empty cells, blank lines of a CSV file are no rows."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertd.i18n import Text
from bertd.protocol import partial_path
from bertd.sheets import SheetError, check_workbook_archive, column_names, decode_csv

# What a data row gets appended: a label (None: left empty) or a score, one per new column;
# None for the whole row: an empty text, so every new cell stays empty.
RowCells = Sequence[Any] | None


@dataclass
class InputSheet:
    """One sheet's texts, and how to write the file back with columns appended."""

    name: str
    columns: list[str]
    # One entry per data row, in order; None where the text cell is empty (or only blanks).
    texts: list[str | None]
    write: Callable[[list[str], list[RowCells], Path], None]


def text_of(value: Any) -> str | None:
    """A cell as the text to classify: None for an empty cell or one of only blanks."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _column_index(columns: list[str], text_column: str, where: Text | str) -> int:
    if text_column not in columns:
        raise SheetError(Text("{missing}; columns are: {columns}", columns=", ".join(columns),
                              missing=Text("text column {column!r} not found in {where}", column=text_column,
                                           where=where)))
    return columns.index(text_column)


def _replace_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write to the .partial sibling, then rename it into place: a reader never sees half a file."""
    partial = partial_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        write(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


# ---- .xlsx ---------------------------------------------------------------------------------------


def _read_workbook(path: Path, display_name: str, sheet_name: str | None, text_column: str) -> InputSheet:
    check_workbook_archive(path, display_name)
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path)
    except Exception as error:  # openpyxl raises many types for broken workbooks
        raise SheetError(Text("{name} is not a readable .xlsx workbook: {error}", name=display_name,
                              error=str(error))) from error
    if sheet_name is not None and sheet_name not in workbook.sheetnames:
        raise SheetError(Text("sheet {sheet!r} not found in {name}; sheets are: {names}", sheet=sheet_name,
                              name=display_name, names=", ".join(workbook.sheetnames)), code="sheet_missing")
    sheet = workbook[sheet_name] if sheet_name is not None else workbook.worksheets[0]
    where = Text("sheet {sheet!r} of {name}", sheet=sheet.title, name=display_name)
    rows = sheet.iter_rows(min_row=1, values_only=True)
    header = list(next(rows, ()))
    columns = column_names(header)
    index = _column_index(columns, text_column, where)
    texts: list[str | None] = []
    last_data_row = 0  # pandas leaves out the empty rows at the end of a sheet
    for position, values in enumerate(rows, start=1):
        texts.append(text_of(values[index]) if index < len(values) else None)
        if any(value is not None for value in values):
            last_data_row = position
    del texts[last_data_row:]

    def write(new_columns: list[str], cells: list[RowCells], target: Path) -> None:
        first = sheet.max_column + 1
        for offset, name in enumerate(new_columns):
            sheet.cell(row=1, column=first + offset, value=name)
        for row_number, row_cells in enumerate(cells, start=2):
            if row_cells is None:
                continue
            for offset, value in enumerate(row_cells):
                if value is not None:
                    sheet.cell(row=row_number, column=first + offset, value=value)
        _replace_atomically(target, workbook.save)

    return InputSheet(sheet.title, columns, texts, write)


# ---- .csv ----------------------------------------------------------------------------------------


def _is_blank(row: list[str]) -> bool:
    """A line pandas skips (skip_blank_lines): nothing on it, or only blanks."""
    return not row or (len(row) == 1 and not row[0].strip())


def _line_ending(text: str) -> str:
    newline = text.find("\n")
    return "\r\n" if newline > 0 and text[newline - 1] == "\r" else "\n"


def _read_csv(path: Path, display_name: str, sheet_name: str | None, text_column: str) -> InputSheet:
    stem = Path(display_name).stem
    if sheet_name not in (None, stem):
        raise SheetError(Text("sheet {sheet!r} not found in {name}; a CSV file has one sheet, {stem!r}",
                              sheet=sheet_name, name=display_name, stem=stem), code="sheet_missing")
    encoding, text = decode_csv(path.read_bytes(), display_name)
    newline = _line_ending(text)
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise SheetError(Text("{name} is not a readable CSV file: {error}", name=display_name, error=str(error))) \
            from error
    header_at = next((position for position, row in enumerate(lines) if not _is_blank(row)), None)
    if header_at is None:
        raise SheetError(Text("{name} has no header row", name=display_name))
    header = lines[header_at]
    columns = column_names(list(header))
    index = _column_index(columns, text_column, display_name)
    data_lines = [position for position in range(header_at + 1, len(lines)) if not _is_blank(lines[position])]
    texts = [text_of(lines[position][index]) if index < len(lines[position]) else None for position in data_lines]

    def write(new_columns: list[str], cells: list[RowCells], target: Path) -> None:
        width = len(header)
        appended: dict[int, list[str]] = {header_at: new_columns}
        for position, row_cells in zip(data_lines, cells, strict=True):
            appended[position] = ["" if value is None else (f"{value:.6f}" if isinstance(value, float) else str(value))
                                  for value in (row_cells or [None] * len(new_columns))]

        def write_csv(partial: Path) -> None:
            with partial.open("w", encoding=encoding, newline="") as handle:
                writer = csv.writer(handle, lineterminator=newline)
                for position, row in enumerate(lines):
                    extra = appended.get(position)
                    writer.writerow(row if extra is None else [*row, *[""] * (width - len(row)), *extra])

        _replace_atomically(target, write_csv)

    return InputSheet(stem, columns, texts, write)


def read_input(path: Path, display_name: str, sheet_name: str | None, text_column: str) -> InputSheet:
    """The sheet to predict (None: the first), its texts, and its writer. Raises SheetError."""
    if path.suffix.lower() == ".csv":
        return _read_csv(path, display_name, sheet_name, text_column)
    return _read_workbook(path, display_name, sheet_name, text_column)
