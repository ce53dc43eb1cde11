"""TF Serving's REST JSON <-> tensors.

Request bodies (`:predict`):
  row format       {"signature_name": s?, "instances": [ {alias: value, ...}, ... ]}
                   or "instances": [value, ...] when the signature has a single input
  columnar format  {"signature_name": s?, "inputs": {alias: value, ...}} or "inputs": value
Exactly one of "instances" / "inputs"; every signature input must be given (TF Serving
applies SignatureDef defaults to gRPC requests only). Strings may be {"b64": "<base64>"}.

A value of the wrong JSON type for the input's dtype is refused with TF Serving's message
(`JSON Value: "x" Type: String is not of expected type: float`): numbers for float and
double, integers (no fraction, as written in the JSON) for integer dtypes, strings for
string, true/false for bool. Shapes are not checked against the signature (nor does TF
Serving check them).

`:classify` and `:regress` bodies: {"signature_name": s?, "context": {...}?,
"examples": [{feature: value or [values]}, ...]} -> serialized tf.Examples (numbers with a
fraction or exponent are float features, integers and booleans int64, strings and
{"b64"} bytes), answered {"results": [[[label, score], ...], ...]} and {"results": [v, ...]}.

Responses: row format -> {"predictions": [...]} (a list of values when the signature
has one output, else a list of {alias: value} objects); columnar -> {"outputs": value or
{alias: value}}. String outputs are UTF-8 text, or {"b64": ...} when the alias ends in
`_bytes` or the bytes are not valid UTF-8. Floats keep float32's shortest representation.
"""
from __future__ import annotations

import base64
import binascii
import json
import math

import numpy as np

from movierec.serving.errors import ServingError, invalid_argument

MAX_NESTING = 32
MAX_DEBUG_CHARS = 256     # JSON quoted in an error message, as TF Serving cuts it
_INT_RANGE = {"int8": 32, "int16": 32, "int32": 32, "uint8": 32, "uint16": 32, "int64": 64,
              "uint32": "u32", "uint64": "u64"}


def json_debug_string(value) -> str:
    """A JSON value as TF Serving quotes it in errors: compact, at most 256 characters."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text[:MAX_DEBUG_CHARS]


def json_type_string(value) -> str:
    """rapidjson's type name of a JSON value, as TF Serving's messages say it."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _leaf_fits(v, dtype: str) -> bool:
    """Whether one JSON leaf is of the JSON type TF Serving accepts for `dtype`."""
    if dtype in ("float", "double", "half", "bfloat16"):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if dtype == "string":
        return isinstance(v, str) or (isinstance(v, dict) and set(v) == {"b64"})
    if dtype == "bool":
        return isinstance(v, bool)
    bits = _INT_RANGE.get(dtype)
    if bits is None:
        return True
    if not isinstance(v, int) or isinstance(v, bool):
        return False
    if bits == 32:
        return -2**31 <= v < 2**31
    if bits == 64:
        return -2**63 <= v < 2**63
    return 0 <= v < (2**32 if bits == "u32" else 2**64)


def _first_misfit(value, dtype: str, depth: int = 0):
    """The first leaf of a JSON tensor value that `dtype` does not accept, as a 1-tuple
    (None when every leaf fits)."""
    if depth > MAX_NESTING:
        return None
    if isinstance(value, list):
        for v in value:
            found = _first_misfit(v, dtype, depth + 1)
            if found is not None:
                return found
        return None
    return None if _leaf_fits(value, dtype) else (value,)


def check_json_types(alias: str, raw, arr: np.ndarray, dtype: str | None) -> None:
    """TF Serving's type rule for the JSON value `raw` of an input of `dtype` (TF's name:
    float, int64, string...); `arr` is its parsed array, which settles the common cases."""
    if dtype is None:
        return
    kind = arr.dtype.kind
    if dtype in ("float", "double") and kind in "if":
        return
    if kind == "i" and dtype in _INT_RANGE and (not arr.size or (_leaf_fits(int(arr.min()), dtype)
                                                                 and _leaf_fits(int(arr.max()), dtype))):
        return
    if dtype == "string" and kind == "O" and all(type(v) in (str, bytes) for v in arr.reshape(-1).tolist()):
        return   # text, or bytes from {"b64"} objects
    if dtype == "bool" and kind == "b":
        return
    bad = _first_misfit(raw, dtype)
    if bad is not None:
        raise invalid_argument(f"JSON Value: {json_debug_string(bad[0])} Type: {json_type_string(bad[0])} "
                               f"is not of expected type: {dtype}")


_NOT_LEAVES = {list, dict, type(None)}


def _decode_b64(value, depth: int = 0):
    """Replaces {"b64": s} objects by bytes, recursively; rejects other objects in tensors."""
    if depth > MAX_NESTING:
        raise invalid_argument(f"JSON value nested deeper than {MAX_NESTING} levels")
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise invalid_argument('JSON object in a tensor value must be {"b64": "<base64 string>"}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise invalid_argument("Unable to base64 decode") from None
    if isinstance(value, list):
        if not set(map(type, value)) & _NOT_LEAVES:   # only plain leaves: nothing to replace
            return value
        return [_decode_b64(v, depth + 1) for v in value]
    if value is None:
        raise invalid_argument("null is not a valid tensor value")
    return value


def _ragged_check(alias: str, value) -> np.ndarray:
    try:
        arr = np.array(value, dtype=object)
    except ValueError:
        raise invalid_argument(f"input '{alias}' is not a rectangular tensor (ragged lists)") from None
    # np.array of ragged lists gives a 1-d object array of lists: detect it
    if arr.dtype == object and arr.size and list in set(map(type, arr.reshape(-1).tolist())):
        raise invalid_argument(f"input '{alias}' is not a rectangular tensor (ragged lists)")
    return arr


def _common_array(value) -> np.ndarray | None:
    """The array of a value in one of the forms requests mostly take, built in one step:
    a str/int/float scalar, or a list (or list of equal-length lists) whose leaves are all
    str, all int or all float. The same array as the general path below gives; None for
    any other form. Leaf types are gathered with map(type, ...) at C speed, so a million
    numbers take milliseconds."""
    t = type(value)
    if t is str:
        return np.array(value, dtype=object)
    if t is int:
        return np.array(value, dtype=np.int64)   # OverflowError when out of range
    if t is float:
        return np.array(value, dtype=np.float64)
    if t is not list or not value:
        return None
    if type(value[0]) is list:
        n = len(value[0])
        if not n or not all(type(row) is list and len(row) == n for row in value):
            return None
        kinds = set().union(*(map(type, row) for row in value))
    else:
        kinds = set(map(type, value))
    if kinds == {str}:
        return np.array(value, dtype=object)
    if kinds == {int}:
        return np.array(value, dtype=np.int64)
    if kinds == {float}:
        return np.array(value, dtype=np.float64)
    return None


def _to_array(alias: str, value):
    try:
        arr = _common_array(value)
    except OverflowError:
        raise invalid_argument(f"input '{alias}': integer out of range") from None
    return arr if arr is not None else _general_array(alias, value)


def _general_array(alias: str, value) -> np.ndarray:
    """Any JSON tensor value: {"b64"} objects decoded, ragged lists refused, then bool,
    int64, float64 or object (strings, bytes) by what the leaves are."""
    value = _decode_b64(value)
    arr = _ragged_check(alias, value)
    kinds = set(map(type, arr.reshape(-1).tolist()))   # leaf types, at C speed
    if kinds == {bool}:
        return arr.astype(bool)
    if kinds and kinds <= {int, float}:
        if kinds == {int}:
            try:
                return arr.astype(np.int64)
            except OverflowError:
                raise invalid_argument(f"input '{alias}': integer out of range") from None
        return arr.astype(np.float64)
    return arr


def parse_predict_body(body, input_aliases: list[str],
                       dtypes: dict[str, str] | None = None) -> tuple[str, dict, bool]:
    """-> (signature_name, {alias: np.ndarray}, row_format).

    As in TF Serving's REST API, every input of the signature must be given (SignatureDef
    defaults apply to gRPC requests only). dtypes: alias -> TF dtype name (float, int64,
    string...) of the signature's inputs, to refuse values of the wrong JSON type with TF
    Serving's message; without it the servable's dtype conversion decides.
    """
    signature_name = parse_signature_name(body)
    dtypes = dtypes or {}

    def to_array(alias, raw, rows=False):
        try:
            arr = _to_array(alias, raw)
        except ServingError as e:
            if rows and "rectangular" in e.message:
                _instances_shape_error(raw)
            raise
        check_json_types(alias, raw, arr, dtypes.get(alias))
        return arr

    unknown_keys = sorted(set(body) - {"signature_name", "instances", "inputs"})
    if unknown_keys:
        raise invalid_argument(f"Unexpected key(s) in request: {str(unknown_keys)[:MAX_DEBUG_CHARS]}")
    has_rows, has_cols = "instances" in body, "inputs" in body
    if not has_rows and not has_cols:
        raise invalid_argument("Missing 'inputs' or 'instances' key")
    if has_rows and has_cols:
        raise invalid_argument("Not formatted correctly expecting only one of 'inputs' or "
                               "'instances' keys to exist")
    aliases = sorted(input_aliases)
    if has_rows:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise invalid_argument("Expecting 'instances' to be an list/array")
        if not instances:
            raise invalid_argument("No values in 'instances' array")
        named = [isinstance(i, dict) and set(i) != {"b64"} for i in instances]
        if all(named):
            for n, instance in enumerate(instances):
                if sorted(instance) != aliases:
                    raise invalid_argument(
                        f"Failed to process element: {n} of 'instances' list. JSON object: keys "
                        f"must be equal to: {','.join(aliases)}")
            return signature_name, {k: to_array(k, [i[k] for i in instances], True) for k in aliases}, True
        if any(named):
            raise invalid_argument("Instances must be all named (JSON objects) or all unnamed")
        if len(aliases) != 1:
            raise invalid_argument("instances is a plain list, but expecting list of objects as "
                                   "multiple input tensors required as per tensorinfo_map "
                                   f"({','.join(aliases)})")
        return signature_name, {aliases[0]: to_array(aliases[0], instances, True)}, True
    inputs = body["inputs"]
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        for alias in aliases:
            if alias not in inputs:
                raise invalid_argument(f"Missing named input: {alias} in 'inputs' object.")
        extra = sorted(set(inputs) - set(aliases))
        if extra:
            raise invalid_argument(f"Unknown named input(s) {extra} in 'inputs' object; the "
                                   f"signature's inputs are {aliases}")
        return signature_name, {k: to_array(k, inputs[k]) for k in aliases}, False
    if len(aliases) != 1:
        raise invalid_argument("inputs is a plain value/list, but expecting an object as multiple "
                               f"input tensors required as per tensorinfo_map ({','.join(aliases)})")
    return signature_name, {aliases[0]: to_array(aliases[0], inputs)}, False


def _dense_shape(value, depth: int = 0) -> list[int]:
    """The shape a JSON value claims, read along its first elements (TF Serving's
    GetDenseTensorShape)."""
    shape = []
    while isinstance(value, list) and depth <= MAX_NESTING:
        shape.append(len(value))
        value = value[0] if value else None
        depth += 1
    return shape


def _leaf_count(value, depth: int = 0) -> int:
    if isinstance(value, list) and depth <= MAX_NESTING:
        return sum(_leaf_count(v, depth + 1) for v in value)
    return 1


def _instances_shape_error(instances: list) -> None:
    """Raises TF Serving's message for instances of different sizes or shapes ("Expecting
    tensor size: 2 but got: 3", "Expecting shape [2] but got: [1,2]"); returns when it
    finds no such pair."""
    first_shape, first_size = _dense_shape(instances[0]), _leaf_count(instances[0])
    for item in instances[1:]:
        size, shape = _leaf_count(item), _dense_shape(item)
        if size != first_size:
            raise invalid_argument(f"Expecting tensor size: {first_size} but got: {size}")
        if shape != first_shape:
            raise invalid_argument(f"Expecting shape [{','.join(map(str, first_shape))}] but got: "
                                   f"[{','.join(map(str, shape))}]")


def parse_signature_name(body) -> str:
    """The body's (optional) signature_name; the body must be a JSON object."""
    if not isinstance(body, dict):
        raise invalid_argument(f"JSON Value: {json_debug_string(body)} Is not object")
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument(f"JSON Value: {json_debug_string(body)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    return signature_name


# -- :classify and :regress -----------------------------------------------------------------
def _feature_kind(v, name: str) -> str:
    """The tf.train.Feature list a JSON leaf goes to (TF Serving's AddValueToFeature)."""
    if v is None or isinstance(v, list) or (isinstance(v, dict) and not (set(v) == {"b64"} and isinstance(v["b64"], str))):
        raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: {json_type_string(v)}")
    if isinstance(v, bool):
        return "int64"
    if isinstance(v, (dict, str)):
        return "bytes"
    if isinstance(v, float):
        return "float"
    if 2**63 <= v < 2**64:
        raise invalid_argument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
    if not -2**63 <= v < 2**64:
        return "float"   # beyond 64 bits JSON parsers read a double
    return "int64"


def example_from_json(obj):
    """One {feature: value or [values]} JSON object -> tf.train.Example."""
    from tensorflow.core.example import example_pb2

    if not isinstance(obj, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {json_type_string(obj)}")
    example = example_pb2.Example()
    for name, content in obj.items():
        feature = example.features.feature[name]
        kind = None
        for v in (content if isinstance(content, list) else [content]):
            k = _feature_kind(v, name)
            if kind is not None and k != kind:
                raise invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind}")
            kind = k
            if k == "bytes":
                feature.bytes_list.value.append(_decode_b64(v) if isinstance(v, dict) else v.encode("utf-8"))
            elif k == "float":
                feature.float_list.value.append(float(v))
            else:
                feature.int64_list.value.append(int(v))
    return example


def parse_examples_body(body, method: str) -> tuple[str, list[bytes]]:
    """A :classify or :regress body -> (signature_name, serialized tf.Examples, each with the
    "context" features first when a context is given, as TF Serving merges them)."""
    signature_name = parse_signature_name(body)
    context = b""
    if "context" in body:
        context = example_from_json(body["context"]).SerializeToString()
    if "examples" not in body:
        raise invalid_argument(f"JSON Value: {json_debug_string(body)} When method is {method}, key "
                               "'examples' is expected and was not found")
    examples = body["examples"]
    if not isinstance(examples, list):
        raise invalid_argument(f"JSON Value: {json_debug_string(body)} Expecting 'examples' value to be "
                               "an list/array")
    if not examples:
        raise invalid_argument(f"JSON Value: {json_debug_string(body)} 'examples' value is an empty array")
    return signature_name, [context + example_from_json(e).SerializeToString() for e in examples]


def classify_response(classifications: list[list[tuple[str, float]]]) -> dict:
    return {"results": [[[label, _float32(np.float32(score))] for label, score in row]
                        for row in classifications]}


def regress_response(values: list[float]) -> dict:
    return {"results": [_float32(np.float32(v)) for v in values]}


def _utf8_or_b64(b: bytes):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(b).decode("ascii")}


def _b64(b: bytes):
    return {"b64": base64.b64encode(b).decode("ascii")}


def _float32(v: float):
    # float32's shortest repr ("0.1", not "0.10000000149011612"); inf/nan stay floats
    return float(repr(v)) if math.isfinite(v) else float(v)


def _map_nested(fn, arr: np.ndarray):
    """`arr.tolist()` with `fn` applied to each element, as a numpy scalar (np.vectorize has
    a fixed cost per call that outweighs the work on a response's several small outputs)."""
    return _nest([fn(v) for v in arr.reshape(-1)], arr.shape)


def _nest(flat: list, shape: tuple):
    """A flat list -> nested lists of `shape` (as ndarray.tolist() nests them)."""
    if not shape:
        return flat[0]
    for d in reversed(shape[1:]):
        flat = [flat[i:i + d] for i in range(0, len(flat), d)]
    return flat


def _json_value(alias: str, arr: np.ndarray):
    if arr.dtype == object or arr.dtype.kind == "S":
        if not arr.size:
            return arr.tolist()
        flat = arr.reshape(-1).tolist()
        if alias.endswith("_bytes"):
            return _nest([_b64(b) for b in flat], arr.shape)
        try:
            return _nest([b.decode("utf-8") for b in flat], arr.shape)   # the common case: all text
        except UnicodeDecodeError:
            return _nest([_utf8_or_b64(b) for b in flat], arr.shape)
    if arr.dtype.kind == "f":
        if arr.dtype == np.float32:
            return _map_nested(_float32, arr) if arr.size else arr.tolist()
        return arr.astype(np.float64).tolist()
    return arr.tolist()


def predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    if not row_format:
        if len(outputs) == 1:
            (alias, arr), = outputs.items()
            return {"outputs": _json_value(alias, arr)}
        return {"outputs": {a: _json_value(a, v) for a, v in outputs.items()}}
    batch_sizes = {a: (v.shape[0] if v.ndim else None) for a, v in outputs.items()}
    sizes = set(batch_sizes.values())
    if len(sizes) != 1 or None in sizes:
        raise invalid_argument(f"Output tensors of the row format must share a batch size; got "
                               f"{batch_sizes}. Use the columnar format ('inputs').")
    if len(outputs) == 1:
        (alias, arr), = outputs.items()
        return {"predictions": _json_value(alias, arr)}
    columns = {a: _json_value(a, v) for a, v in outputs.items()}
    n = sizes.pop()
    return {"predictions": [{a: columns[a][i] for a in outputs} for i in range(n)]}
