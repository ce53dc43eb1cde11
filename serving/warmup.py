"""SavedModel warmup on load: replay `assets.extra/tf_serving_warmup_requests`.

The exporters write a few representative requests (the file format is part of
`movierec.contract`); the server replays them when a version loads, as TF Serving does, so
the first real request does not pay for graph warm-up. A version whose warmup fails does
not become available.
"""
from __future__ import annotations

from movierec.contract import MAX_WARMUP_RECORDS, WARMUP_FILE, read_warmup_requests, write_predict_warmup

__all__ = ["MAX_WARMUP_RECORDS", "WARMUP_FILE", "read_warmup_requests", "replay", "write_predict_warmup"]


def replay(servable, requests: list) -> int:
    """Calls `servable.predict` with each PredictRequest's inputs; returns how many."""
    import tensorflow as tf  # noqa: PLC0415

    for request in requests:
        inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
        servable.predict(request.model_spec.signature_name, inputs, list(request.output_filter))
    return len(requests)
