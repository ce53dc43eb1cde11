"""TF Serving's REST JSON <-> tensors.

Request bodies (`:predict`):
  row format       {"signature_name": s?, "instances": [ {alias: value, ...}, ... ]}
                   or "instances": [value, ...] when the signature has a single input
  columnar format  {"signature_name": s?, "inputs": {alias: value, ...}} or "inputs": value
Exactly one of "instances" / "inputs"; every signature input must be given (TF Serving
applies SignatureDef defaults to gRPC requests only). Strings may be {"b64": "<base64>"}.

Responses: row format -> {"predictions": [...]} (a list of values when the signature
has one output, else a list of {alias: value} objects); columnar -> {"outputs": value or
{alias: value}}. String outputs are UTF-8 text, or {"b64": ...} when the alias ends in
`_bytes` or the bytes are not valid UTF-8. Floats keep float32's shortest representation.
"""
from __future__ import annotations

import base64
import binascii
import math

import numpy as np

from movierec.serving.errors import invalid_argument

MAX_NESTING = 32


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
    if arr.dtype == object and arr.size and any(isinstance(v, list) for v in arr.reshape(-1)):
        raise invalid_argument(f"input '{alias}' is not a rectangular tensor (ragged lists)")
    return arr


def _common_array(value) -> np.ndarray | None:
    """The array of a value in one of the forms requests mostly take, built in one step:
    a str/int/float scalar, or a list (or list of equal-length lists) of str, or a list of
    int. The same array as the general path below gives; None for any other form."""
    t = type(value)
    if t is str:
        return np.array(value, dtype=object)
    if t is int:
        return np.array(value, dtype=np.int64)   # OverflowError when out of range
    if t is float:
        return np.array(value, dtype=np.float64)
    if t is not list or not value:
        return None
    first = type(value[0])
    if first is str and all(type(v) is str for v in value):
        return np.array(value, dtype=object)
    if first is int and all(type(v) is int for v in value):
        return np.array(value, dtype=np.int64)
    if first is list:
        n = len(value[0])
        if n and all(type(row) is list and len(row) == n and all(type(v) is str for v in row) for row in value):
            return np.array(value, dtype=object)
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
    if arr.size and all(isinstance(v, (bool, np.bool_)) for v in arr.reshape(-1)):
        return arr.astype(bool)
    if arr.size and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arr.reshape(-1)):
        if all(isinstance(v, int) for v in arr.reshape(-1)):
            try:
                return arr.astype(np.int64)
            except OverflowError:
                raise invalid_argument(f"input '{alias}': integer out of range") from None
        return arr.astype(np.float64)
    return arr


def parse_predict_body(body, input_aliases: list[str]) -> tuple[str, dict, bool]:
    """-> (signature_name, {alias: np.ndarray}, row_format).

    As in TF Serving's REST API, every input of the signature must be given (SignatureDef
    defaults apply to gRPC requests only).
    """
    if not isinstance(body, dict):
        raise invalid_argument("JSON Value: request body Is not object")
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument("'signature_name' key must be a string value.")
    unknown_keys = sorted(set(body) - {"signature_name", "instances", "inputs"})
    if unknown_keys:
        raise invalid_argument(f"Unexpected key(s) in request: {unknown_keys}")
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
            return signature_name, {k: _to_array(k, [i[k] for i in instances]) for k in aliases}, True
        if any(named):
            raise invalid_argument("Instances must be all named (JSON objects) or all unnamed")
        if len(aliases) != 1:
            raise invalid_argument("instances is a plain list, but expecting list of objects as "
                                   "multiple input tensors required as per tensorinfo_map "
                                   f"({','.join(aliases)})")
        return signature_name, {aliases[0]: _to_array(aliases[0], instances)}, True
    inputs = body["inputs"]
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        for alias in aliases:
            if alias not in inputs:
                raise invalid_argument(f"Missing named input: {alias} in 'inputs' object.")
        extra = sorted(set(inputs) - set(aliases))
        if extra:
            raise invalid_argument(f"Unknown named input(s) {extra} in 'inputs' object; the "
                                   f"signature's inputs are {aliases}")
        return signature_name, {k: _to_array(k, inputs[k]) for k in aliases}, False
    if len(aliases) != 1:
        raise invalid_argument("inputs is a plain value/list, but expecting an object as multiple "
                               f"input tensors required as per tensorinfo_map ({','.join(aliases)})")
    return signature_name, {aliases[0]: _to_array(aliases[0], inputs)}, False


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
    """`arr.tolist()` with `fn` applied to each element, as a numpy scalar (np.vectorize
    costs ~20 us a call; a response has several small outputs)."""
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
