"""The prediction engine in-process, on a randomly initialised classifier: batching, column names,
a stop, refusals, and a UTF-8 CSV file with a byte order mark written back as it came."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bertd.protocol import Interruption, PredictionJob, TrainingInputError, TrainingStopped, partial_path
from bertd.training.predict_sheet import length_batches, output_columns, run_prediction

from conftest import TINY_MODEL
from datagen import LABEL_WORDS, labelled_frame


@pytest.fixture(scope="module")
def classifier(base_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels = sorted(LABEL_WORDS)
    directory = tmp_path_factory.mktemp("classifier")
    model = AutoModelForSequenceClassification.from_pretrained(
        base_models_dir / TINY_MODEL, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)})
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(base_models_dir / TINY_MODEL).save_pretrained(directory)
    return directory


def job_for(classifier: Path, data: Path, output: Path, **settings: object) -> PredictionJob:
    values: dict[str, object] = {"prediction_id": "p", "task_id": "t", "model_dir": str(classifier),
                                 "input_path": str(data), "input_name": data.name, "sheet_name": None,
                                 "text_column": "内容", "output_path": str(output), "max_length": 32, "cpu_threads": 1}
    values.update(settings)
    return PredictionJob(**values)  # type: ignore[arg-type]


def test_batches_hold_each_row_once_longest_first_within_the_token_budget() -> None:
    lengths = np.random.default_rng(0).integers(1, 300, size=1000)
    batches = length_batches(lengths, 4096)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    widths = [int(lengths[batch].max()) for batch in batches]
    assert widths == sorted(widths, reverse=True)
    assert all(len(batch) * width <= 4096 for batch, width in zip(batches, widths, strict=True))


def test_new_columns_take_a_suffix_only_when_a_name_is_taken() -> None:
    assert output_columns(2, ["内容"]) == ["predicted_label", "predicted_score", "predicted_label_2",
                                          "predicted_score_2"]
    assert output_columns(1, ["predicted_score", "predicted_label.1"]) == ["predicted_label.2", "predicted_score.2"]


def test_a_utf8_csv_with_a_byte_order_mark_comes_back_with_it(classifier: Path, tmp_path: Path) -> None:
    data = tmp_path / "bom.csv"
    frame = labelled_frame(rows_per_label=3, seed=2)
    data.write_bytes(frame.to_csv(index=False, lineterminator="\n").encode("utf-8-sig"))
    result = run_prediction(job_for(classifier, data, tmp_path / "out.csv", top_k=2), lambda _: None, lambda: None)
    written = (tmp_path / "out.csv").read_bytes()
    assert written.startswith(b"\xef\xbb\xbf") and b"\r\n" not in written
    lines = written.decode("utf-8-sig").splitlines()
    original = data.read_bytes().decode("utf-8-sig").splitlines()
    assert lines[0] == original[0] + ",predicted_label,predicted_score,predicted_label_2,predicted_score_2"
    assert all(line.startswith(before + ",") for line, before in zip(lines[1:], original[1:], strict=True))
    assert (result.rows_total, result.rows_empty, sum(result.label_counts.values())) == (9, 0, 9)


def test_a_stop_ends_the_job_without_a_result_and_bad_input_is_a_clear_error(classifier: Path, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    labelled_frame(rows_per_label=5, seed=1).to_csv(data, index=False)
    output = tmp_path / "out.csv"
    calls = iter([None, None, Interruption.STOP])
    with pytest.raises(TrainingStopped):
        run_prediction(job_for(classifier, data, output), lambda _: None, lambda: next(calls, Interruption.STOP))
    assert not output.exists() and not partial_path(output).exists()

    with pytest.raises(TrainingInputError, match="text column '正文' not found in rows.csv; columns are: 编号, 内容, 标签"):
        run_prediction(job_for(classifier, data, output, text_column="正文"), lambda _: None, lambda: None)
    with pytest.raises(TrainingInputError, match="top_k 4 is more than the model's 3 labels"):
        run_prediction(job_for(classifier, data, output, top_k=4), lambda _: None, lambda: None)
    with pytest.raises(TrainingInputError, match="no longer on disk"):
        run_prediction(job_for(classifier, data, output, model_dir=str(tmp_path / "gone")), lambda _: None,
                       lambda: None)
    assert not output.exists()


def test_scores_are_the_pipelines_for_texts_of_every_length(classifier: Path, tmp_path: Path) -> None:
    """The whole engine (bulk tokenising, length-sorted batches, the first-token last layer) against
    transformers' own pipeline on the same texts: the same label and score on every row."""
    from transformers import pipeline

    frame = labelled_frame(rows_per_label=20, seed=5)
    frame["内容"] = [text * (1 + row % 7) for row, text in enumerate(frame["内容"])]  # 1x to 7x: mixed widths
    data = tmp_path / "mixed.csv"
    frame.to_csv(data, index=False)
    run_prediction(job_for(classifier, data, tmp_path / "out.csv", max_length=64), lambda _: None, lambda: None)
    ours = pd.read_csv(tmp_path / "out.csv")
    theirs = pipeline("text-classification", model=str(classifier), device=-1)(
        frame["内容"].tolist(), truncation=True, max_length=64)
    assert ours["predicted_label"].tolist() == [result["label"] for result in theirs]
    assert np.abs(ours["predicted_score"].to_numpy() - [result["score"] for result in theirs]).max() < 1e-5


def test_the_last_layer_runs_for_the_first_token_only_with_the_full_layers_logits(classifier: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from bertd.training.first_token import FirstTokenLayer, first_token_only

    model = AutoModelForSequenceClassification.from_pretrained(classifier).eval()
    ids = torch.randint(5, 60, (4, 40))
    mask = torch.ones_like(ids)
    mask[1, 9:], mask[3, 30:] = 0, 0
    with torch.inference_mode():
        full = model(input_ids=ids, attention_mask=mask).logits
    assert first_token_only(model, torch.device("cpu"))
    assert isinstance(model.bert.encoder.layer[-1], FirstTokenLayer)
    with torch.inference_mode():
        assert torch.allclose(model(input_ids=ids, attention_mask=mask).logits, full, atol=1e-6)

    training = AutoModelForSequenceClassification.from_pretrained(classifier).train()
    assert not first_token_only(training, torch.device("cpu"))  # training needs every token's output


def test_a_first_token_layer_that_disagrees_with_the_full_one_is_not_used(classifier: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.models.bert.modeling_bert import BertLayer

    from bertd.training import first_token

    original = first_token.FirstTokenLayer.forward
    monkeypatch.setattr(first_token.FirstTokenLayer, "forward",
                        lambda self, *args, **kwargs: original(self, *args, **kwargs) + 0.5)
    model = AutoModelForSequenceClassification.from_pretrained(classifier).eval()
    assert not first_token.first_token_only(model, torch.device("cpu"))
    assert type(model.bert.encoder.layer[-1]) is BertLayer


def test_long_texts_cut_before_tokenising_get_the_ids_of_the_whole_text() -> None:
    """Random texts of Chinese, Latin words that split into word pieces (so a cut inside a word would
    change its ids), digits, spaces, punctuation, a control character BERT deletes (joining its
    neighbours into one word) and combining accents: the job's ids are the tokenizer's own, through
    cut texts where possible and whole ones where a cut falls short of max_length."""
    import random

    from transformers import BertTokenizerFast

    from bertd.training.predict_sheet import tokenize
    from bertd.training.text_prefix import cut_text, is_bert_wordpiece

    words = ["工", "厂", "排", "放", "废", "气", "噪", "音", "扬", "尘", "，", "。", "（", "）", "！", ".", "𠀋",
             "abc", "##abc", "a", "##b", "##c", "word", "##word", "w", "##o", "##r", "##d", "2024", "##2024", "2",
             "##0", "##4", "pm", "##2", "5", "e", "x", "##x", "abcabc"]
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])})
    assert is_bert_wordpiece(tokenizer)
    # Without CJK ideographs as words of their own, a cut after one could split a word: no cutting.
    assert not is_bert_wordpiece(BertTokenizerFast(vocab=tokenizer.get_vocab(), tokenize_chinese_chars=False))
    pieces = ["工厂", "排放", "废气", "，", "。", "噪音", "abc", "Word", "word", "2024", " ", "\n", "\x0b", "e\u0301",
              "（", "！", "x", "PM2.5", "\u3000", "𠀋", "扬尘"]
    generator = random.Random(3)
    texts = ["".join(generator.choice(pieces) for _ in range(generator.randint(1, 160))) for _ in range(600)]
    texts += ["扬尘" * 200, "word " * 200, "abc" * 300]
    max_length = 48
    # Where a wrong cut would show: the 46th token is the word "abcabc", whose halves a deleted
    # control character joins, and the first place a cut is looked for is right after that character.
    texts += ["工" * 45 + " " * 15 + "abc\x0babc。" + "工" * 30, "工" * 45 + " " * 16 + "abcabc。" + "工" * 30]
    expected = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    assert tokenize(tokenizer, texts, max_length, lambda: None) == expected
    cut = [text for text in texts if cut_text(text, max_length) is not None]
    assert len(cut) > 100  # the cut was taken for many, and the whole text was needed for some
    assert any(len(tokenizer(cut_text(text, max_length), truncation=True, max_length=max_length)["input_ids"])
               < max_length for text in cut)
