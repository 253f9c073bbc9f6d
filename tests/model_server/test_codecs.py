"""The default formats and content negotiation, without HTTP."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sagepilot_model_server import codecs
from sagepilot_model_server.errors import BadRequest, NotAcceptable
from sagepilot_model_server.examples import feature_rows, to_csv, to_jsonl


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("text/csv", "text/csv"),
        ("Text/CSV; charset=utf-8", "text/csv"),
        ("text/csv;label_size=0", "text/csv"),
        ("application/jsonl", "application/jsonlines"),
        ("application/x-ndjson", "application/jsonlines"),
        ("  ", None),
        (None, None),
    ],
)
def test_media_type(header, expected):
    assert codecs.media_type(header) == expected


def test_generated_data_decodes_to_the_same_numbers_in_every_format():
    rows = feature_rows(100, seed=21)
    assert codecs.decode_records(to_csv(rows), codecs.CSV) == rows
    assert codecs.decode_records(to_jsonl(rows), codecs.JSONLINES) == rows
    assert codecs.decode_records(json.dumps(rows), codecs.JSON) == rows


def test_csv_details():
    assert codecs.decode_records('1, 2.5 ,"3"\r\n4,5,6\r\n\r\n', codecs.CSV) == [[1.0, 2.5, 3.0], [4.0, 5.0, 6.0]]
    with pytest.raises(BadRequest, match="CSV line 2 is empty"):
        codecs.decode_records("1,2\n \n3,4\n", codecs.CSV)
    with pytest.raises(BadRequest, match="'inf' is not a finite number"):
        codecs.decode_records("1,inf\n", codecs.CSV)


def test_json_numbers_must_be_finite_numbers():
    with pytest.raises(BadRequest, match="record 1, feature 2: nan is not a finite number"):
        codecs.decode_records("[[1, NaN]]", codecs.JSON)
    with pytest.raises(BadRequest, match="'instances' must be a list"):
        codecs.decode_records('{"instances": 3}', codecs.JSON)


def test_encoding_numpy_predictions():
    predictions = np.array([1, 0, 1])
    assert codecs.encode_predictions(predictions, codecs.CSV) == b"1\n0\n1\n"
    assert codecs.encode_predictions(predictions, codecs.JSONLINES) == b"1\n0\n1\n"
    assert codecs.encode_predictions(predictions, codecs.JSON) == b'{"predictions":[1,0,1]}\n'
    probabilities = np.array([[0.25, 0.75], [0.5, 0.5]])
    assert codecs.encode_predictions(probabilities, codecs.CSV) == b"0.25,0.75\n0.5,0.5\n"
    assert codecs.encode_predictions(probabilities, codecs.JSONLINES) == b"[0.25,0.75]\n[0.5,0.5]\n"


def test_encoding_records_of_mixed_shapes():
    predictions = [{"label": np.int64(1), "score": np.float32(0.5)}, {"label": 0, "score": 0.25}]
    assert codecs.encode_predictions(predictions, codecs.CSV) == b"1,0.5\n0,0.25\n"
    assert codecs.encode_predictions(predictions, codecs.JSONLINES) == (
        b'{"label":1,"score":0.5}\n{"label":0,"score":0.25}\n'
    )
    assert codecs.encode_predictions(["a,b", 'say "hi"'], codecs.CSV) == b'"a,b"\n"say ""hi"""\n'
    assert codecs.encode_predictions({"custom": 1}, codecs.JSON) == b'{"custom":1}\n'


def test_encoding_refuses_what_cannot_be_one_prediction_per_record():
    with pytest.raises(TypeError, match="one prediction per record"):
        codecs.encode_predictions(3, codecs.CSV)
    with pytest.raises(ValueError, match="Out of range float"):
        codecs.encode_predictions([float("nan")], codecs.JSON)


@pytest.mark.parametrize(
    ("header", "supported", "expected"),
    [
        (None, codecs.SUPPORTED_TYPES, "text/csv"),
        ("", codecs.SUPPORTED_TYPES, "text/csv"),
        ("application/*", codecs.SUPPORTED_TYPES, "application/json"),
        ("application/jsonlines;q=0.2, application/json;q=0.8", codecs.SUPPORTED_TYPES, "application/json"),
        ("text/html, application/json", codecs.SUPPORTED_TYPES, "application/json"),
        ("text/html", None, "text/html"),  # user output_fn decides
        ("*/*", None, "text/csv"),
    ],
)
def test_negotiate_accept(header, supported, expected):
    assert codecs.negotiate_accept(header, default="text/csv", supported=supported) == expected


def test_negotiate_accept_refuses_with_the_choices():
    with pytest.raises(NotAcceptable, match="accept one of text/csv, application/json, application/jsonlines"):
        codecs.negotiate_accept("text/html", default="text/csv", supported=codecs.SUPPORTED_TYPES)
