"""Reading, cleaning and splitting data: the pure part of the worker's job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bertd.protocol import Hyperparameters, TrainingInputError
from bertd.training.data import load_dataset, stratified_split

from datagen import labelled_frame, write_csv, write_xlsx


def hyperparameters(**changes) -> Hyperparameters:
    return Hyperparameters.model_validate({"text_column": "内容", "label_column": "标签", **changes})


def test_missing_column_names_the_sheet_and_lists_columns(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "d.xlsx", {"data": labelled_frame(rows_per_label=3)})
    with pytest.raises(TrainingInputError) as error:
        load_dataset(path, None, hyperparameters(label_column="标签列"))
    assert str(error.value) == "label column '标签列' not found in sheet 'data' of d.xlsx"
    assert error.value.code == "column_missing"
    assert error.value.hint == "set hyperparameters.label_column to one of its columns: 编号, 内容, 标签"


def test_missing_sheet_lists_the_sheets(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "d.xlsx", {"data": labelled_frame(rows_per_label=3), "more": labelled_frame(1)})
    with pytest.raises(TrainingInputError) as error:
        load_dataset(path, None, hyperparameters(sheet_name="Sheet1"))
    assert str(error.value) == "sheet 'Sheet1' not found in d.xlsx; sheets are: data, more"
    assert error.value.code == "sheet_missing" and "hyperparameters.sheet_name" in error.value.hint


def test_empty_rows_are_dropped_and_reported(tmp_path: Path) -> None:
    frame = labelled_frame(rows_per_label=10)
    frame.loc[0, "内容"] = "  "
    frame.loc[1, "标签"] = None
    dataset = load_dataset(write_xlsx(tmp_path / "d.xlsx", {"data": frame}), None, hyperparameters())
    assert len(dataset.train_texts) + len(dataset.validation_texts) == 28
    assert [str(warning) for warning in dataset.warnings] == [
        "dropped 1 row(s) with an empty text and 1 row(s) with an empty label from sheet 'data' of d.xlsx"]


def test_labels_keep_their_strings_in_sorted_order_and_numbers_stay_as_written(tmp_path: Path) -> None:
    frame = labelled_frame(rows_per_label=5)
    frame["标签"] = frame["标签"].map({"工业废气": "10", "扬尘": "2", "油烟": "B类"})
    dataset = load_dataset(write_csv(tmp_path / "d.csv", frame), None, hyperparameters())
    assert dataset.label_names == ["10", "2", "B类"]


def test_stratified_split_keeps_every_label_in_both_parts_and_is_seeded() -> None:
    labels = np.array([0] * 50 + [1] * 20 + [2] * 5 + [3] * 1)
    train, validation = stratified_split(labels, 0.2, seed=7)
    assert sorted(np.concatenate([train, validation]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[validation]).tolist() == [10, 4, 1]
    assert 75 in train  # a label with one row stays in training
    again = stratified_split(labels, 0.2, seed=7)
    other = stratified_split(labels, 0.2, seed=8)
    assert np.array_equal(again[1], validation) and not np.array_equal(other[1], validation)
