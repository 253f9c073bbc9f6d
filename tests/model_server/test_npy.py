"""`application/x-npy` (NumPy's .npy), the default of SageMaker's scikit-learn container and of the SDK's
SKLearnPredictor (NumpySerializer / NumpyDeserializer), in and out, read and written without NumPy."""

from __future__ import annotations

import io

import numpy as np
import pytest

from sagepilot_model_server import codecs
from sagepilot_model_server.errors import BadRequest

from .conftest import invoke, rows


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1.5, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        np.array([[1, 2], [3, 4]], dtype=np.int32),
        np.asfortranarray(np.arange(6, dtype=">f4").reshape(2, 3)),
        np.array([0.25, 0.5, 1.0], dtype=np.float16),
    ],
)
def test_numpy_arrays_decode_to_records(array: np.ndarray) -> None:
    expected = array.reshape(1, -1) if array.ndim == 1 else array
    assert codecs.decode_npy_records(npy(array)) == expected.astype(float).tolist()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"1,2,3\n", "not a .npy file"),
        (npy(np.array(["a", "b"])), "not numeric"),
        (npy(np.zeros((2, 2, 2))), "1-D or 2-D"),
        (npy(np.array([[1.0, np.nan]])), "not a finite number"),
        (npy(np.array([[1.0, 2.0]]))[:-4], "announces"),
    ],
)
def test_bad_npy_bodies_are_400s_saying_why(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        codecs.decode_npy_records(body)


@pytest.mark.parametrize("values", [[0, 1, 1], [0.5, 0.25], [[1, 2], [3, 4]], [[0.1, 0.9], [0.7, 0.3]]])
def test_predictions_written_as_npy_load_with_numpy(values: list) -> None:
    loaded = np.load(io.BytesIO(codecs.encode_predictions(values, codecs.NPY)))
    assert loaded.tolist() == values


def test_the_example_model_answers_npy_with_npy(v1_server, v1_estimator) -> None:
    records = rows(5)
    reply = invoke(v1_server, npy(np.array(records)), "application/x-npy", "application/x-npy")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/x-npy"
    assert np.load(io.BytesIO(reply.body)).tolist() == [int(x) for x in v1_estimator.predict(records)]
    as_csv = invoke(v1_server, npy(np.array(records)), "application/x-npy", "text/csv")
    assert as_csv.status == 200 and len(as_csv.text.splitlines()) == 5
