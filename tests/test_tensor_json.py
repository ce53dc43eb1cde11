"""REST JSON <-> tensors: the one-step path for common request values gives exactly the
general path's arrays; responses nest and encode strings as TF Serving does."""
import base64

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.serving import tensor_json
from movierec.serving.errors import ServingError

leaf = st.one_of(st.text(max_size=5), st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.booleans())
values = st.one_of(leaf, st.lists(leaf, max_size=4), st.lists(st.lists(leaf, max_size=3), max_size=3),
                   st.lists(st.lists(st.text(max_size=3), min_size=2, max_size=2), min_size=1, max_size=3))


def general_or_error(value):
    try:
        return tensor_json._general_array("x", value)
    except ServingError as e:
        return e.message


@settings(max_examples=400, deadline=None)
@given(values)
def test_common_forms_take_one_step_to_the_same_array(value):
    try:
        fast = tensor_json._common_array(value)
    except OverflowError:
        assert general_or_error(value) == "input 'x': integer out of range"
        return
    if fast is None:
        return
    slow = general_or_error(value)
    assert isinstance(slow, np.ndarray), slow
    assert (fast.dtype, fast.shape) == (slow.dtype, slow.shape)
    assert fast.tolist() == slow.tolist()


def test_the_common_forms_are_taken():
    assert tensor_json._common_array(["42"]).dtype == object
    assert tensor_json._common_array(10).dtype == np.int64
    assert tensor_json._common_array([[""], ["a"]]).shape == (2, 1)
    assert tensor_json._common_array([1, 2.5]) is None            # mixed: the general path
    assert tensor_json._common_array([{"b64": "YQ=="}]) is None   # b64 objects: the general path
    assert tensor_json._common_array([["a"], ["b", "c"]]) is None  # ragged: refused by the general path


def test_to_array_refuses_an_integer_out_of_range():
    with pytest.raises(ServingError, match="input 'k': integer out of range"):
        tensor_json._to_array("k", 2**70)


def test_string_outputs_are_text_or_b64_and_keep_their_shape():
    arr = np.array([[b"a", b"\xff"], [b"", b"caf\xc3\xa9"]], object)
    assert tensor_json._json_value("ids", arr) == [["a", {"b64": base64.b64encode(b"\xff").decode()}], ["", "café"]]
    assert tensor_json._json_value("raw_bytes", arr[:1, :1]) == [[{"b64": "YQ=="}]]
    assert tensor_json._json_value("one", np.array(b"x", object)) == "x"
    assert tensor_json._json_value("none", np.zeros((2, 0), object)) == [[], []]


def test_float32_outputs_use_their_shortest_form():
    assert tensor_json._json_value("s", np.array([[0.1, 2.5]], np.float32)) == [[0.1, 2.5]]
