"""Which models `movierec serve` serves: named by flags or a models.config file
(`model_config`), else every model folder under a serving root.

With no model flags, `movierec serve` serves what `movierec run` pushed: each folder
`<serving_root>/<model>/` is a model of that name whose numeric subfolders are its
versions. The serving root may be local or on an object store (read through tf.io.gfile).
"""
from __future__ import annotations

import posixpath

from movierec import filesystems
from movierec.serving import model_config


def model_specs(model_config_file: str | None = None, model_name: str | None = None,
                model_base_path: str | None = None, serving_root: str | None = None) -> list[model_config.ModelSpec]:
    """The models to serve, in order of precedence: `model_config_file` (TF Serving's
    models.config), `model_name` with `model_base_path` (one model), else one model per
    folder under `serving_root`. ValueError names what is missing: a name without a base
    path (or the reverse), or a serving root with no model folders."""
    if model_config_file:
        return model_config.load_model_config(model_config_file)
    if model_name or model_base_path:
        if not (model_name and model_base_path):
            raise ValueError("--model_name and --model_base_path go together")
        return model_config.from_flags(model_name, model_base_path)
    if not serving_root:
        raise ValueError("no models to serve: give a models.config, a model name and base path, or a serving root")
    import tensorflow as tf  # noqa: PLC0415  (the serving root may be on an object store)

    root = filesystems.absolute(serving_root)
    gfile = tf.io.gfile
    children = [d.rstrip("/") for d in gfile.listdir(root)] if gfile.isdir(root) else []
    names = sorted(d for d in children if gfile.isdir(posixpath.join(root, d)))
    if not names:
        raise ValueError(f"no models to serve: {root} has no model folders (run `movierec run` first, "
                         "or pass --model_config_file / --model_name and --model_base_path)")
    return [model_config.ModelSpec(name=n, base_path=posixpath.join(root, n)) for n in names]
