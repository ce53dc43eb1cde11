"""One loaded model version: its SignatureDefs and a checked `predict`.

Like TF Serving, a version is loaded as a TF1-style session bundle: the `serve` MetaGraph in
its own `tf.Graph` and `Session` (variables restored, table initialisers run), and a
request runs the SignatureDef's tensors by name through a cached C++ callable
(`Session::MakeCallable`, as `CallableOptions`) per (signature, inputs fed, outputs
fetched). Compared with calling the TF2 signature function this skips the eager call
machinery, and compared with `Session.run` (which `Session.make_callable` falls back to
whenever it has feeds) the Python-side feed and fetch handling, which for a top-10 request
costs more than the graph run itself. The graph run happens outside Python's GIL.

`Servable.predict(signature_name, inputs, output_filter)` follows TF Serving's Predict:
an empty signature name means `serving_default`; an unknown signature is
FAILED_PRECONDITION; an unknown input alias, a missing input without a SignatureDef default
or a wrong dtype is INVALID_ARGUMENT; errors raised by the graph keep their TensorFlow status
code. Shapes are not checked against the SignatureDef, as TF Serving does not check them:
half_plus_two's `x` is [-1, 1] and TF Serving answers `x = [2, 3, 4]` with `[3, 3.5, 4]`;
a shape the graph's ops cannot take fails in the graph, with TensorFlow's message.

`Servable.classify`, `regress` and `infer` follow TF Serving's Classify, Regress and
MultiInference (classifier.cc, regressor.cc, multi_inference.cc): serialized tf.Examples
are fed to the signature's single `inputs` string tensor, and the `classes`/`scores` or
`outputs` tensors are checked and returned per example.
"""
from __future__ import annotations

import threading

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2

from movierec.serving.errors import (ServingError, failed_precondition, from_tf_error,
                                     invalid_argument)

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def read_signature_defs(path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """SignatureDefs of the `serve` MetaGraph of a SavedModel folder (no TF graph loaded);
    the folder may be on an object store (read through `tf.io.gfile`)."""
    sm = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(f"{path.rstrip('/')}/saved_model.pb", "rb") as f:
        sm.ParseFromString(f.read())
    for mg in sm.meta_graphs:
        if "serve" in mg.meta_info_def.tags:
            return {k: v for k, v in mg.signature_def.items() if not k.startswith("__")}
    raise ValueError(f"{path}: no MetaGraph tagged 'serve'")


class _Input:
    """One SignatureDef input, read out of its proto once (proto field access is slow)."""
    __slots__ = ("alias", "feed", "dtype", "np_dtype", "is_string", "int_range")

    def __init__(self, alias: str, info: meta_graph_pb2.TensorInfo):
        self.alias, self.feed = alias, info.name
        self.dtype = tf.dtypes.as_dtype(info.dtype)
        self.is_string = self.dtype == tf.string
        self.np_dtype = None if self.is_string else np.dtype(self.dtype.as_numpy_dtype)
        self.int_range = ((int(np.iinfo(self.np_dtype).min), int(np.iinfo(self.np_dtype).max))
                          if self.dtype.is_integer else None)


def _converted(spec: _Input, value) -> np.ndarray:
    """The fast paths of `_as_dtype`: an array already of the signature's dtype (gRPC
    requests), or a few integers that fit it (REST's k); anything else goes the long way."""
    if type(value) is np.ndarray:
        if value.dtype == object:
            if spec.is_string:
                flat = value.ravel().tolist()
                if all(type(v) is bytes for v in flat):
                    return value
                try:   # REST's strings: encoded in one pass
                    encoded = [v if type(v) is bytes else v.encode("utf-8") for v in flat]
                except (AttributeError, UnicodeEncodeError):
                    return _as_dtype(spec.alias, value, spec.dtype)   # names the bad value
                out = np.empty(len(encoded), dtype=object)
                out[:] = encoded
                return out.reshape(value.shape)
        elif value.dtype == spec.np_dtype:
            return value
        elif spec.int_range is not None and value.dtype.kind in "iu" and value.size <= 16:
            values = value.ravel().tolist()
            if not values or spec.int_range[0] <= min(values) and max(values) <= spec.int_range[1]:
                return value.astype(spec.np_dtype)
    return _as_dtype(spec.alias, value, spec.dtype)


def _as_dtype(alias: str, value, dtype: tf.DType) -> np.ndarray:
    """Python/numpy value -> numpy array of the signature's dtype, or INVALID_ARGUMENT."""
    try:
        if dtype == tf.string:
            arr = np.asarray(value, dtype=object)
            flat = arr.reshape(-1)
            for i, v in enumerate(flat):
                if isinstance(v, str):
                    flat[i] = v.encode("utf-8")
                elif not isinstance(v, (bytes, np.bytes_)):
                    raise TypeError(f"{type(v).__name__} value {v!r}")
            return arr
        arr = np.asarray(value)
        if arr.dtype == object or arr.dtype.kind in "SUV":
            raise TypeError(f"non-numeric value of type {arr.dtype}")
        if dtype == tf.bool and arr.dtype != np.bool_:
            raise TypeError(f"{arr.dtype} is not bool")
        if dtype.is_integer and arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise TypeError("non-integer number")
        if dtype.is_integer:
            info = np.iinfo(dtype.as_numpy_dtype)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise TypeError(f"value out of range for {dtype.name}")
        return arr.astype(dtype.as_numpy_dtype)
    except (TypeError, ValueError, OverflowError) as e:
        raise invalid_argument(f"input '{alias}' must be {dtype.name}: {e}") from None


def session_config() -> tf.compat.v1.ConfigProto:
    """Each request's graph runs on the thread that calls it, on one intra-op thread.

    A top-k request is a few hundred microseconds of small ops: handing them to TF's shared
    thread pools costs more than it saves, and the pools' spinning workers take CPU from
    the front ends on a small machine (one thread: less CPU per call, same wall time at
    batch 1). Concurrency comes from concurrent requests instead.
    """
    return tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=-1)


class Servable:
    """A SavedModel version loaded for serving."""

    def __init__(self, name: str, version: int, path: str):
        self.name, self.version, self.path = name, version, path
        self.signature_defs = read_signature_defs(path)
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=session_config())
        with self._graph.as_default():
            tf.compat.v1.saved_model.loader.load(self._session, ["serve"], path)
        self._callables: dict[tuple, object] = {}
        self._callables_lock = threading.Lock()
        self._defaults = {
            sig: {alias: tf.make_ndarray(proto) for alias, proto in sd.defaults.items()}
            for sig, sd in self.signature_defs.items()}
        self._inputs = {sig: [_Input(a, info) for a, info in sorted(sd.inputs.items())]
                        for sig, sd in self.signature_defs.items()}
        self._outputs = {sig: list(sd.outputs) for sig, sd in self.signature_defs.items()}

    def _callable(self, name: str, feed_aliases: tuple, fetch_aliases: tuple):
        key = (name, feed_aliases, fetch_aliases)
        fn = self._callables.get(key)
        if fn is None:
            sd = self.signature_defs[name]
            with self._callables_lock:
                fn = self._callables.get(key)
                if fn is None:
                    options = config_pb2.CallableOptions(
                        feed=[sd.inputs[a].name for a in feed_aliases],
                        fetch=[sd.outputs[a].name for a in fetch_aliases])
                    fn = self._session._make_callable_from_options(options)  # noqa: SLF001
                    self._callables[key] = fn
        return fn

    def resolve_signature(self, signature_name: str) -> tuple[str, meta_graph_pb2.SignatureDef]:
        name = signature_name or DEFAULT_SIGNATURE
        sd = self.signature_defs.get(name)
        if sd is None:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        return name, sd

    def predict(self, signature_name: str, inputs: dict, output_filter=()) -> dict[str, np.ndarray]:
        """inputs: alias -> array-like (or np.ndarray); returns alias -> np.ndarray."""
        name, sd = self.resolve_signature(signature_name)
        specs = self._inputs[name]
        unknown = [a for a in inputs if a not in sd.inputs]
        if unknown:
            unknown.sort()
            expected = ",".join(sorted(sd.inputs))
            if len(inputs) > len(sd.inputs):
                raise invalid_argument(
                    f"input size does not match signature: {len(inputs)}!={len(sd.inputs)} "
                    f"len({{{','.join(sorted(inputs))}}}) != len({{{expected}}}). "
                    f"Sent extra: {{{','.join(unknown)}}}.")
            raise invalid_argument(
                f"Inputs contains invalid name. Used request inputs: {{{','.join(sorted(inputs))}}}, "
                f"request input: {unknown[0]}. Inputs expected in the set {{{expected}}}.")
        feed_aliases, values = [], []
        for spec in specs:   # sorted by alias
            alias = spec.alias
            if alias in inputs:
                value = _converted(spec, inputs[alias])
            elif alias in self._defaults[name]:
                value = self._defaults[name][alias]
            else:
                raise invalid_argument(
                    f"Signature input alias: {alias}(feed name: {spec.feed}) not found in request "
                    f"and no default value provided. Inputs expected to be in the request "
                    f"{{{','.join(sorted(inputs))}}}, or default input alias set: "
                    f"{','.join(sorted(self._defaults[name]))}")
            feed_aliases.append(alias)
            values.append(value)
        wanted = tuple(output_filter) or tuple(self._outputs[name])
        missing = [a for a in wanted if a not in sd.outputs]
        if missing:
            raise invalid_argument(f"output tensor alias not found in signature: {missing[0]} "
                                   f"Outputs expected to be in the set {{{','.join(sorted(sd.outputs))}}}.")
        try:
            result = self._callable(name, tuple(feed_aliases), wanted)(*values)
        except tf.errors.OpError as e:
            raise from_tf_error(e) from None
        except (TypeError, ValueError) as e:
            raise invalid_argument(str(e)) from None
        return dict(zip(wanted, result))

    # -- Classify, Regress, MultiInference (tf.Example inputs) ------------------------------
    def classify(self, signature_name: str, examples: list[bytes]) -> list[list[tuple[str, float]]]:
        """Serialized tf.Examples -> per example, its (label, score) classes (label "" when the
        signature has no `classes` output, score 0 when it has no `scores`)."""
        name = signature_name or DEFAULT_SIGNATURE
        sd = self.signature_defs.get(name)
        if sd is None:
            raise invalid_argument(f"No signature was found with the name: {name}")
        return self._classify(name, sd, _examples_tensor(examples))

    def regress(self, signature_name: str, examples: list[bytes]) -> list[float]:
        """Serialized tf.Examples -> one regression value per example."""
        name = signature_name or DEFAULT_SIGNATURE
        sd = self.signature_defs.get(name)
        if sd is None:
            raise invalid_argument(f"No signature was found with the name: {name}")
        return self._regress(name, sd, _examples_tensor(examples))

    def infer(self, tasks: list[tuple[str, str]], examples: list[bytes]) -> list[tuple[str, list]]:
        """MultiInference: tasks are (signature name, method name) on the same examples;
        -> per task ("classify", classes as `classify` gives) or ("regress", values).
        Every task is checked before any runs, as TF Serving does."""
        plans, seen = [], set()
        for signature_name, method in tasks:
            name = signature_name or DEFAULT_SIGNATURE
            if name in seen:
                raise invalid_argument(f"Duplicate evaluation of signature: {name}")
            seen.add(name)
            sd = self.signature_defs.get(name)
            if sd is None:
                raise invalid_argument(f"Requested signature not found in model graph: {name}")
            if method == CLASSIFY_METHOD:
                _classification_outputs(sd)
            elif method == REGRESS_METHOD:
                _regression_output(sd)
            else:
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported signature method_name: {method}")
            plans.append((name, sd, method))
        feed = _examples_tensor(examples)
        return [("classify", self._classify(name, sd, feed)) if method == CLASSIFY_METHOD
                else ("regress", self._regress(name, sd, feed)) for name, sd, method in plans]

    def _classify(self, name: str, sd, feed: np.ndarray) -> list[list[tuple[str, float]]]:
        aliases = _classification_outputs(sd)
        out = self.predict(name, {"inputs": feed}, aliases)
        n = len(feed)
        classes, scores = out.get("classes"), out.get("scores")
        for alias, arr, dtype in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
            if arr is None:
                continue
            if arr.ndim != 2:
                raise invalid_argument(f"Expected Tensor shape: [batch_size num_classes] but got "
                                       f"{_shape_debug(arr.shape)}")
            if (arr.dtype == object) != (dtype == "DT_STRING") or (dtype == "DT_FLOAT" and arr.dtype != np.float32):
                raise invalid_argument(f"Expected {alias} Tensor of {dtype}. Got: "
                                       f"DT_{tf.dtypes.as_dtype(arr.dtype).name.upper()}")
            if arr.shape[0] != n:
                raise invalid_argument(f"Expected {alias} output batch size of {n}. Got: {arr.shape[0]}")
        if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
            raise invalid_argument(f"Tensors class and score should match in dim_size(1). Got "
                                   f"{classes.shape[1]} vs. {scores.shape[1]}")
        k = (classes if classes is not None else scores).shape[1]
        labels = ([[b.decode("utf-8", "replace") for b in row] for row in classes.tolist()]
                  if classes is not None else [[""] * k for _ in range(n)])
        values = scores.tolist() if scores is not None else [[0.0] * k for _ in range(n)]
        return [list(zip(labels[i], values[i])) for i in range(n)]

    def _regress(self, name: str, sd, feed: np.ndarray) -> list[float]:
        (alias,) = _regression_output(sd)
        arr = self.predict(name, {"inputs": feed}, (alias,))[alias]
        n = len(feed)
        if not (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1)):
            raise invalid_argument("Expected output Tensor shape to be either [batch_size] or "
                                   f"[batch_size, 1] but got {_shape_debug(arr.shape)}")
        if arr.shape[0] != n:
            raise invalid_argument(f"Input batch size did not match output batch size: {n} vs. {arr.shape[0]}")
        if arr.dtype != np.float32:
            raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: "
                                   f"DT_{tf.dtypes.as_dtype(arr.dtype).name.upper()}")
        return arr.reshape(-1).tolist()

    def __repr__(self) -> str:
        return f"Servable({self.name!r}, {self.version}, {self.path!r})"


def _examples_tensor(examples: list[bytes]) -> np.ndarray:
    if not examples:
        raise invalid_argument("Input is empty.")
    arr = np.empty(len(examples), dtype=object)
    arr[:] = examples
    return arr


def _shape_debug(shape: tuple) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _signature_text(sd) -> str:
    return text_format.MessageToString(sd)


def _classification_outputs(sd) -> tuple[str, ...]:
    """The output aliases a classification signature is read through (TF Serving's
    PreProcessClassification checks, with its messages)."""
    if len(sd.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(sd.outputs) not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found {len(sd.outputs)}")
    if "inputs" not in sd.inputs:
        raise invalid_argument(f"No classification inputs found in SignatureDef: {_signature_text(sd)}")
    aliases = tuple(a for a in ("classes", "scores") if a in sd.outputs)
    if not aliases:
        raise invalid_argument('Expected classification signature outputs to contain at least one of '
                               f'"classes" or "scores". Signature was: {_signature_text(sd)}')
    return aliases


def _regression_output(sd) -> tuple[str]:
    """TF Serving's PreProcessRegression checks, with its messages."""
    if len(sd.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(sd.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if "inputs" not in sd.inputs:
        raise invalid_argument(f"No regression inputs found in SignatureDef: {_signature_text(sd)}")
    if "outputs" not in sd.outputs:
        raise invalid_argument(f"No regression outputs found in SignatureDef: {_signature_text(sd)}")
    return ("outputs",)


__all__ = ["Servable", "ServingError", "read_signature_defs", "DEFAULT_SIGNATURE", "CLASSIFY_METHOD",
           "REGRESS_METHOD"]
