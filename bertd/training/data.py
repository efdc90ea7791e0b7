"""Turning sheets into labelled examples: column checks, cleaning, label mapping, the split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bertd.i18n import Text
from bertd.protocol import Hyperparameters, TrainingInputError
from bertd.sheets import SheetError, read_table
from bertd.training.wording import listed

NO_ROWS_HINT = Text("check that text_column and label_column name the right columns and that their cells are "
                    "filled in")


@dataclass(frozen=True)
class LabelledRows:
    texts: list[str]
    labels: list[str]
    dropped_empty_text: int
    dropped_empty_label: int


@dataclass(frozen=True)
class Dataset:
    label_names: list[str]
    train_texts: list[str]
    train_label_ids: np.ndarray
    validation_texts: list[str]
    validation_label_ids: np.ndarray
    warnings: list[Text]


def _clean_cell(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def labelled_rows(frame: pd.DataFrame, text_column: str, label_column: str, where: Text | str) -> LabelledRows:
    """Texts and labels from two columns; rows with an empty text or label are dropped and counted."""
    columns = [str(column) for column in frame.columns]
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in columns:
            missing = (Text("text column {column!r} not found in {where}", column=column, where=where) if role == "text"
                       else Text("label column {column!r} not found in {where}", column=column, where=where))
            raise TrainingInputError(
                missing, code="column_missing",
                hint=Text("set hyperparameters.{role}_column to one of its columns: {columns}", role=role,
                          columns=listed(columns)),
            )
    texts = [_clean_cell(value) for value in frame[text_column].tolist()]
    labels = [_clean_cell(value) for value in frame[label_column].tolist()]
    kept_texts, kept_labels = [], []
    dropped_text = dropped_label = 0
    for text, label in zip(texts, labels, strict=True):
        if not text:
            dropped_text += 1
        elif not label:
            dropped_label += 1
        else:
            kept_texts.append(text)
            kept_labels.append(label)
    return LabelledRows(kept_texts, kept_labels, dropped_text, dropped_label)


def stratified_split(label_ids: np.ndarray, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of training and validation rows: each label keeps its share in both parts.
    A label with a single row stays in training, where the model can at least learn it."""
    rng = np.random.default_rng(seed)
    train_parts, validation_parts = [], []
    for label_id in np.unique(label_ids):
        indices = np.flatnonzero(label_ids == label_id)
        rng.shuffle(indices)
        if len(indices) < 2:
            train_parts.append(indices)
            continue
        take = min(max(1, int(round(len(indices) * validation_fraction))), len(indices) - 1)
        validation_parts.append(indices[:take])
        train_parts.append(indices[take:])
    train = np.sort(np.concatenate(train_parts)) if train_parts else np.array([], dtype=np.int64)
    validation = np.sort(np.concatenate(validation_parts)) if validation_parts else np.array([], dtype=np.int64)
    return train, validation


def _read(path: Path, sheet_name: str | None, text_column: str, label_column: str) -> tuple[LabelledRows, Text]:
    try:
        sheet, frame = read_table(path, sheet_name)
    except SheetError as error:
        hint = (Text("set hyperparameters.sheet_name (validation_sheet_name for the validation file) to one of the "
                     "sheets named, or null for the first") if error.code == "sheet_missing"
                else Text("upload the file again as an .xlsx workbook or a UTF-8 / GB18030 CSV file"))
        raise TrainingInputError(error.text, code=error.code, hint=hint) from error
    where = Text("sheet {sheet!r} of {name}", sheet=sheet, name=path.name)
    return labelled_rows(frame, text_column, label_column, where), where


def _dropped_warning(rows: LabelledRows, where: Text) -> Text | None:
    texts, labels = rows.dropped_empty_text, rows.dropped_empty_label
    if texts and labels:
        return Text("dropped {texts} row(s) with an empty text and {labels} row(s) with an empty label from {where}",
                    texts=texts, labels=labels, where=where)
    if texts:
        return Text("dropped {rows} row(s) with an empty text from {where}", rows=texts, where=where)
    if labels:
        return Text("dropped {rows} row(s) with an empty label from {where}", rows=labels, where=where)
    return None


def load_dataset(training_path: Path, validation_path: Path | None, hp: Hyperparameters) -> Dataset:
    """Read, clean and split the data as the task's hyperparameters say."""
    text_column, label_column = hp.text_column, hp.label_column
    rows, where = _read(training_path, hp.sheet_name, text_column, label_column)
    warnings = [w for w in [_dropped_warning(rows, where)] if w]
    if not rows.texts:
        raise TrainingInputError(Text("no rows left in {where} after dropping rows with an empty text or label",
                                      where=where), code="no_rows", hint=NO_ROWS_HINT)
    label_names = sorted(set(rows.labels))
    if len(label_names) < 2:
        raise TrainingInputError(
            Text("label column {column!r} in {where} has only one label ({label!r})", column=label_column,
                 where=where, label=label_names[0]), code="single_label",
            hint=Text("a classifier needs at least 2: add rows of another label, or check that label_column is the "
                      "right column"),
        )
    label_to_id = {label: index for index, label in enumerate(label_names)}
    label_ids = np.array([label_to_id[label] for label in rows.labels], dtype=np.int64)

    if validation_path is None and hp.train_val_split == 0:
        # As the original system did on request: every row trains, nothing is held out.
        warnings.append(Text("train_val_split is 0 and there is no validation_data_file: training on all {rows} "
                             "rows without validation metrics; the last epoch is saved", rows=len(rows.texts)))
        return Dataset(label_names, rows.texts, label_ids, [], np.array([], dtype=np.int64), warnings)
    if validation_path is None:
        train_index, validation_index = stratified_split(label_ids, hp.train_val_split, hp.random_seed)
        if len(validation_index) == 0:
            raise TrainingInputError(
                Text("too few rows in {where} to hold out a validation set", where=where), code="too_few_rows",
                hint=Text("add rows, upload a validation_data_file, or set train_val_split to 0 to train on every "
                          "row without validation"),
            )
        texts = np.array(rows.texts, dtype=object)
        return Dataset(
            label_names,
            texts[train_index].tolist(),
            label_ids[train_index],
            texts[validation_index].tolist(),
            label_ids[validation_index],
            warnings,
        )

    validation_rows, validation_where = _read(validation_path, hp.validation_sheet_name, text_column, label_column)
    warning = _dropped_warning(validation_rows, validation_where)
    if warning:
        warnings.append(warning)
    if not validation_rows.texts:
        raise TrainingInputError(Text("no rows left in {where} after dropping rows with an empty text or label",
                                      where=validation_where), code="no_rows", hint=NO_ROWS_HINT)
    unseen = sorted(set(validation_rows.labels) - set(label_names))
    if unseen:
        raise TrainingInputError(
            Text("{where} has label(s) that never occur in the training data: {labels}", where=validation_where,
                 labels=listed(unseen)),
            code="unseen_labels",
            hint=Text("remove those rows from the validation file, or add examples of those labels to the training "
                      "data"),
        )
    return Dataset(
        label_names,
        rows.texts,
        label_ids,
        validation_rows.texts,
        np.array([label_to_id[label] for label in validation_rows.labels], dtype=np.int64),
        warnings,
    )
