"""Can stock TF Serving load this SavedModel? A static check of the exported graph.

Checks: a MetaGraph tagged `serve`; a `serving_default` signature; no Python-function ops
(PyFunc, EagerPyFunc, PyFuncStateless) and no op unknown to core TensorFlow, in the main
graph or in any function of its library.
"""
from __future__ import annotations


FORBIDDEN_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


class NotServableError(ValueError):
    pass


def check_servable(saved_model_dir: str) -> dict:
    """Returns {"signatures": [...], "ops": n} or raises NotServableError naming the problem."""
    from tensorflow.core.protobuf import saved_model_pb2  # noqa: PLC0415
    from tensorflow.python.framework import op_def_registry  # noqa: PLC0415

    import tensorflow as tf  # noqa: PLC0415  (the folder may be on an object store)

    path = f"{saved_model_dir.rstrip('/')}/saved_model.pb"
    if not tf.io.gfile.exists(path):
        raise NotServableError(f"{saved_model_dir}: no saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        sm.ParseFromString(f.read())
    serve = [mg for mg in sm.meta_graphs if "serve" in mg.meta_info_def.tags]
    if not serve:
        raise NotServableError(f"{saved_model_dir}: no MetaGraph tagged 'serve'")
    mg = serve[0]
    if "serving_default" not in mg.signature_def:
        raise NotServableError(f"{saved_model_dir}: no serving_default signature "
                               f"(has {sorted(mg.signature_def)})")
    ops = {n.op for n in mg.graph_def.node}
    for fn in mg.graph_def.library.function:
        ops.update(n.op for n in fn.node_def)
    bad = sorted(ops & FORBIDDEN_OPS)
    if bad:
        raise NotServableError(f"{saved_model_dir}: Python-function ops {bad} cannot run in TF Serving")
    fn_names = {fn.signature.name for fn in mg.graph_def.library.function}
    unknown = sorted(op for op in ops if op not in fn_names and op_def_registry.get(op) is None)
    if unknown:
        raise NotServableError(f"{saved_model_dir}: ops unknown to core TensorFlow: {unknown}")
    return {"signatures": sorted(s for s in mg.signature_def if not s.startswith("__")), "ops": len(ops)}
