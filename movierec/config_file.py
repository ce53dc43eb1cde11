"""`movierec.yaml`: a run's settings in a file, merged with flags into one `PipelineConfig`.

The file maps onto `movierec.config.PipelineConfig`: its top-level keys are that class's
fields (`eval_percent`, `max_k`, `beam_pipeline_args`, ...) plus `output_dir` (the folder
holding pipeline/, metadata.sqlite and serving/); the sections `mf`, `content` and
`evaluation` hold the fields of `MFConfig`, `ContentConfig` and `EvalConfig`. In
`evaluation`, `rules` is a list of {metric, baseline} and `overrides` maps a model name to
such a list (the form of `--gate MODEL=METRIC:BASELINE`).

Precedence: the config's defaults < the command's own defaults (`retrain`: every span,
MF warm start) < the file < flags. The file is checked as it is read: an unknown key or a
value of the wrong type is a `ConfigFileError` naming the file, the line and the key
(`section.key`); values are then validated once, by the dataclasses, when the merged
settings become a `PipelineConfig` (`PipelineConfig.from_settings`).

`settings_of(config)` is the effective config in the same form: `save_effective` writes it
next to a run's artifacts, `movierec report` shows the latest, and it is a valid `--config`
that trains the same settings. `example_text()` is the committed `movierec.yaml` (every
default, from the dataclasses): `python -m movierec.config_file > movierec.yaml`.

Files are read and written through `tf.io.gfile`, so they may be local or on any
filesystem TensorFlow has registered.
"""
from __future__ import annotations

import dataclasses
import difflib
import posixpath
import sys
import time
import types
import typing
from typing import Any, Mapping

import yaml

from movierec.components.ranking_evaluator.eval_config import EvalConfig, Rule
from movierec.config import ContentConfig, MFConfig, PipelineConfig, default_schema_path

DEFAULT_OUTPUT_DIR = "outputs"
SECTIONS = {"mf": MFConfig, "content": ContentConfig, "evaluation": EvalConfig}
# Fields set by `output_dir` (the standard layout) or by the machine a config runs on.
_NOT_IN_FILE = {"pipeline_root", "metadata_path", "serving_root", "check_local_files"}
# What `retrain` does unless the file or a flag says otherwise.
RETRAIN_DEFAULTS = {"span_window": 0, "warm_start": True}
# Run settings whose meaning depends on the command: in the example file, commented out.
_COMMAND_KEYS = {
    "data_dir": "a MovieLens folder, or the folder of span-<N>/ folders (flag --data-dir); none: "
                "$MOVIEREC_DATA_DIR, else a cached or downloaded ml-100k, else synthetic data",
    "span_window": "null: data_dir is one MovieLens folder (run's default); 0: every span-<N>/ "
                   "folder (retrain's default); W: the last W spans",
    "warm_start": "start MF from the last blessed MF model (run: false, retrain: true)",
}
EFFECTIVE_DIR = "effective_config"   # under the pipeline root: one file per run


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message names the file, line and key."""


# -- the schema: the dataclasses' fields ---------------------------------------------------
def _top_fields() -> dict[str, Any]:
    """Top-level key -> type hint: PipelineConfig's fields as the file spells them."""
    hints = typing.get_type_hints(PipelineConfig)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(PipelineConfig)
              if f.name not in _NOT_IN_FILE and f.name not in SECTIONS}
    fields["data_dir"] = typing.Optional[str]   # none: the data-dir fallback chain
    fields["output_dir"] = str
    return fields


def _section_fields(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        named = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(
                args[0], f"({_describe(args[0])})")
        return "a list"
    if dataclasses.is_dataclass(hint):
        return "a mapping of " + ", ".join(f.name for f in dataclasses.fields(hint))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


# -- reading -------------------------------------------------------------------------------
class _Reader:
    """Type-checks and converts one file's values, naming file, line and key on failure."""

    def __init__(self, path: str, lines: dict[str, int]):
        self.path, self.lines = path, lines

    def fail(self, key: str, message: str) -> ConfigFileError:
        line = self.lines.get(key)
        while line is None and "." in key:
            key = key.rpartition(".")[0]
            line = self.lines.get(key)
        return ConfigFileError(f"{self.path}:{line or 1}: {message}")

    def unknown(self, where: str, keys: list[str], known: list[str]) -> ConfigFileError:
        key = keys[0]
        full = f"{where}.{key}" if where else str(key)
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean {(where + '.') if where else ''}{close[0]}?)" if close else ""
        if not where and key in _NOT_IN_FILE:
            hint = (" (set output_dir: pipeline/, metadata.sqlite and serving/ are made under it)"
                    if key != "check_local_files" else " (not a file setting)")
        others = f"; also unknown: {', '.join(map(str, keys[1:]))}" if keys[1:] else ""
        section = f"in {where}" if where else "at the top level"
        return self.fail(full, f"unknown key {full}{hint}{others}; known {section}: {', '.join(known)}")

    def mapping(self, values, fields: dict[str, Any], where: str) -> dict[str, Any]:
        if not isinstance(values, dict):
            raise self.fail(where, f"{where or 'the file'}: expected a mapping of keys, got {values!r}")
        unknown = [k for k in values if k not in fields]
        if unknown:
            raise self.unknown(where, unknown, list(fields))
        out = {}
        for key, value in values.items():
            full = f"{where}.{key}" if where else key
            if full == "evaluation.overrides":
                out[key] = self.overrides(value, full)
            else:
                out[key] = self.value(value, fields[key], full)
        return out

    def overrides(self, value, where: str) -> tuple[tuple[str, Rule], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.fail(where, f"{where}: expected a mapping of model name -> list of rules, got {value!r}")
        pairs = []
        for model, rules in value.items():
            for rule in self.value(rules, tuple[Rule, ...], f"{where}.{model}"):
                pairs.append((str(model), rule))
        return tuple(pairs)

    def value(self, value, hint, where: str):
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            if len(inner) == 1 and inner[0] in (int, float, bool, str):
                if isinstance(value, (int, float, bool, str)):
                    try:
                        return self.value(value, inner[0], where)
                    except ConfigFileError:
                        pass
            elif len(inner) == 1:
                return self.value(value, inner[0], where)
        elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            if isinstance(value, list):
                return tuple(self.value(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        elif dataclasses.is_dataclass(hint):
            if isinstance(value, dict):
                try:
                    return hint(**self.mapping(value, _section_fields(hint), where))
                except ConfigFileError:
                    raise
                except (TypeError, ValueError) as e:
                    raise self.fail(where, f"{where}: {e}") from None
        elif hint is bool:
            if isinstance(value, bool):
                return value
        elif hint is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif hint is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif hint is str:
            if isinstance(value, str):
                return value
        else:
            raise AssertionError(f"no reader for {hint!r} ({where})")
        raise self.fail(where, f"{where}: expected {_describe(hint)}, got {value!r} ({type(value).__name__})")


def _key_lines(node, prefix: str = "") -> dict[str, int]:
    """Dotted key -> 1-based line of a YAML node tree (mappings only; lists by index)."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}[{i}]"
            lines[key] = item.start_mark.line + 1
            lines.update(_key_lines(item, key))
    return lines


def parse(text: str, path: str = "<config>") -> dict[str, Any]:
    """The settings in `text` (YAML), type-checked: nested plain values, lists as tuples,
    rules as `Rule`s. Every key is optional; an empty file is {}."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigFileError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if values is None:
        return {}
    reader = _Reader(path, _key_lines(node))
    fields = _top_fields()
    if not isinstance(values, dict):
        raise reader.fail("", f"expected a mapping of settings, got {type(values).__name__}")
    top = {k: v for k, v in values.items() if k not in SECTIONS}
    out = reader.mapping(top, {**fields, **{name: None for name in SECTIONS}}, "")
    for name, cls in SECTIONS.items():
        if name in values:
            section = values[name] if values[name] is not None else {}
            out[name] = reader.mapping(section, _section_fields(cls), name)
    return out


def load(path: str) -> dict[str, Any]:
    """`parse` of the file at `path` (a missing file is a ConfigFileError naming it)."""
    import tensorflow as tf  # noqa: PLC0415  (lazy: the CLI's help starts without it)

    if not tf.io.gfile.exists(path):
        raise ConfigFileError(f"{path}: no such config file")
    with tf.io.gfile.GFile(path, "r") as f:
        return parse(f.read(), path)


# -- merging -------------------------------------------------------------------------------
def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win, key by key inside the sections. `evaluation.overrides` merge by
    (model, metric): a later rule replaces an earlier one on the same model and metric."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in SECTIONS and value is not None:
                section = dict(merged.get(key) or {})
                for name, item in value.items():
                    if key == "evaluation" and name == "overrides":
                        item = _merge_overrides(section.get("overrides", ()), item)
                    section[name] = item
                merged[key] = section
            else:
                merged[key] = value
    return merged


def _merge_overrides(earlier, later) -> tuple:
    later = tuple(later)
    replaced = {(model, rule.metric) for model, rule in later}
    return tuple(p for p in earlier if (p[0], p[1].metric) not in replaced) + later


def resolve(file_settings: Mapping[str, Any], flag_settings: Mapping[str, Any],
            retrain: bool = False) -> dict[str, Any]:
    """The settings of one command: its defaults < the file < flags."""
    return merge(RETRAIN_DEFAULTS if retrain else {}, file_settings, flag_settings)


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"mf.epochs": 3, "max_k": 5} -> {"mf": {"epochs": 3}, "max_k": 5} (settings from flags)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        section, _, name = key.rpartition(".")
        (out.setdefault(section, {}) if section else out)[name] = value
    return out


def parse_gate(spec: str) -> tuple[str, Rule]:
    """`MODEL=METRIC:BASELINE` (`--gate`; BASELINE "none": no baseline) -> (model, Rule);
    the model names are checked with the rest of the config."""
    model, sep, rule = spec.partition("=")
    metric, sep2, baseline = rule.partition(":")
    if not (sep and sep2 and model and metric and baseline):
        raise ValueError(f"--gate {spec!r}: expected MODEL=METRIC:BASELINE, e.g. mf=ndcg@10:popularity")
    try:
        return model, Rule(metric, None if baseline == "none" else baseline)
    except ValueError as e:
        raise ValueError(f"--gate {spec!r}: {e}") from None


def default_value(key: str):
    """The default of a setting by its dotted key ("max_k", "mf.epochs"), as the file writes it."""
    if key == "output_dir":
        return DEFAULT_OUTPUT_DIR
    section, _, name = key.rpartition(".")
    return _plain(_field_defaults(SECTIONS[section] if section else PipelineConfig)[name])


# -- writing -------------------------------------------------------------------------------
def _plain(value):
    """A settings value as YAML writes it: tuples as lists, rules as mappings."""
    if isinstance(value, Rule):
        return {"metric": value.metric, "baseline": value.baseline}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _section_plain(cls, values: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        value = values[f.name]
        if cls is EvalConfig and f.name == "overrides":
            by_model: dict[str, list] = {}
            for model, rule in value:
                by_model.setdefault(model, []).append(_plain(rule))
            out[f.name] = by_model
        else:
            out[f.name] = _plain(value)
    return out


def settings_of(config: PipelineConfig) -> dict[str, Any]:
    """The effective settings of `config` in the file's form (`parse` of its YAML and
    `PipelineConfig.from_settings` give `config` back)."""
    out: dict[str, Any] = {"data_dir": config.data_dir, "output_dir": config.output_dir}
    for name in _top_fields():
        if name not in out:
            value = getattr(config, name)
            if name == "schema_path" and value == default_schema_path():
                value = ""   # the packaged schema, wherever the package is installed
            out[name] = _plain(value)
    for name, cls in SECTIONS.items():
        section = getattr(config, name)
        out[name] = _section_plain(cls, {f.name: getattr(section, f.name) for f in dataclasses.fields(cls)})
    return out


def dump(settings: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(settings), sort_keys=False, default_flow_style=False, width=100)


def _write(config: PipelineConfig, path: str, command: str, stamp: str) -> str:
    import tensorflow as tf  # noqa: PLC0415

    tf.io.gfile.makedirs(posixpath.dirname(path) or ".")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(f"# the effective config of `movierec {command}` at {stamp}; a valid --config\n")
        f.write(dump(settings_of(config)))
    return path


def _stamp(when: float | None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if when is None else when))


def save_effective(config: PipelineConfig, command: str, when: float | None = None) -> str:
    """Writes the effective config of one run to `<pipeline_root>/effective_config/
    <UTC time>-<command>.yaml`; returns its path."""
    stamp = _stamp(when)
    return _write(config, posixpath.join(config.pipeline_root, EFFECTIVE_DIR, f"{stamp}-{command}.yaml"),
                  command, stamp)


def save_next_to(config: PipelineConfig, artifact_path: str, command: str) -> str:
    """Writes the effective config beside a file the command made (`spec.json` ->
    `spec.config.yaml`), for commands with no run of their own (compile-kfp)."""
    base = artifact_path[:-5] if artifact_path.endswith(".json") else artifact_path
    return _write(config, f"{base}.config.yaml", command, _stamp(None))


def latest_effective(pipeline_root: str) -> tuple[str, str] | None:
    """(path, text) of the newest saved effective config under `pipeline_root`, or None."""
    import tensorflow as tf  # noqa: PLC0415

    folder = posixpath.join(pipeline_root, EFFECTIVE_DIR)
    if not tf.io.gfile.isdir(folder):
        return None
    names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(folder) if n.endswith(".yaml"))
    if not names:
        return None
    path = posixpath.join(folder, names[-1])
    with tf.io.gfile.GFile(path, "r") as f:
        return path, f.read()


def _field_defaults(cls) -> dict[str, Any]:
    """Field name -> default; fields without one (the paths) are left out."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def example_text() -> str:
    """The committed movierec.yaml: every setting at its default, from the dataclasses."""
    top = {"output_dir": DEFAULT_OUTPUT_DIR}
    defaults = _field_defaults(PipelineConfig)
    for name in _top_fields():
        if name not in top and name not in _COMMAND_KEYS:
            top[name] = _plain(defaults[name])
    parts = ["# movierec settings, every one at its default (generated from movierec/config.py:",
             "#   python -m movierec.config_file > movierec.yaml). Use with",
             "#   movierec run --config movierec.yaml   (also `retrain` and `compile-kfp`);",
             "# flags override the file. Delete what you do not change.",
             ""]
    for name, what in _COMMAND_KEYS.items():
        parts.append(f"# {dump({name: _plain(defaults.get(name))}).strip()}   # {what}")
    parts.append(dump(top).rstrip())
    for name, cls in SECTIONS.items():
        parts += ["", f"# the fields of {cls.__name__} ({cls.__module__})",
                  dump({name: _section_plain(cls, _field_defaults(cls))}).rstrip()]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.stdout.write(example_text())
