"""Which models to serve: `--model_name/--model_base_path`, or a `models.config` file.

`models.config` is TF Serving's own text-format `ModelServerConfig`, so the same file works
for the real `tensorflow_model_server` and for `movierec serve`:

    model_config_list {
      config { name: "mf" base_path: "/models/mf" model_platform: "tensorflow"
               model_version_policy { latest { num_versions: 1 } } }
      config { name: "content" base_path: "/models/content" model_platform: "tensorflow"
               model_version_policy { specific { versions: 3 versions: 4 } }
               version_labels { key: "stable" value: 3 } }
    }
"""
from __future__ import annotations

import dataclasses
import os
import posixpath

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from movierec import filesystems


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    base_path: str
    policy: str = "latest"              # latest | all | specific
    num_versions: int = 1               # for latest
    versions: tuple[int, ...] = ()      # for specific
    labels: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"invalid model name {self.name!r}")
        if self.policy not in ("latest", "all", "specific"):
            raise ValueError(f"model {self.name}: unknown version policy {self.policy!r}")
        if self.policy == "latest" and self.num_versions < 1:
            raise ValueError(f"model {self.name}: latest num_versions must be >= 1")
        if self.policy == "specific" and not self.versions:
            raise ValueError(f"model {self.name}: specific policy needs at least one version")

    def aspired(self, on_disk: list[int]) -> list[int]:
        """The versions this policy wants served, out of those complete on disk (ascending)."""
        if self.policy == "all":
            return list(on_disk)
        if self.policy == "specific":
            return [v for v in on_disk if v in self.versions]
        return list(on_disk[-self.num_versions:])

    @property
    def label_map(self) -> dict[str, int]:
        return dict(self.labels)


def from_flags(model_name: str, model_base_path: str) -> list[ModelSpec]:
    return [ModelSpec(name=model_name, base_path=filesystems.absolute(model_base_path))]


def parse_model_config(text: str, relative_to: str = ".") -> list[ModelSpec]:
    """Parses a ModelServerConfig text proto into ModelSpecs (relative base paths resolved)."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ValueError(f"models.config: Error parsing text-format tensorflow.serving.ModelServerConfig: {e}") from None
    if not config.HasField("model_config_list"):
        raise ValueError("models.config: expected a model_config_list")
    specs, seen = [], set()
    for c in config.model_config_list.config:
        if c.name in seen:
            raise ValueError(f"models.config: model {c.name!r} is listed twice")
        seen.add(c.name)
        if c.model_platform not in ("", "tensorflow"):
            raise ValueError(f"models.config: model {c.name!r}: platform {c.model_platform!r} "
                             "is not supported (tensorflow only)")
        which = c.model_version_policy.WhichOneof("policy_choice")
        kwargs = {}
        if which == "all":
            kwargs["policy"] = "all"
        elif which == "specific":
            kwargs.update(policy="specific", versions=tuple(c.model_version_policy.specific.versions))
        elif which == "latest":
            kwargs.update(policy="latest", num_versions=c.model_version_policy.latest.num_versions or 1)
        absolute = os.path.isabs(c.base_path) or filesystems.scheme(c.base_path)
        base = c.base_path if absolute else posixpath.join(relative_to, c.base_path)
        specs.append(ModelSpec(name=c.name, base_path=filesystems.absolute(base),
                               labels=tuple(sorted(c.version_labels.items())), **kwargs))
    if not specs:
        raise ValueError("models.config: no models")
    return specs


def load_model_config(path: str) -> list[ModelSpec]:
    """The ModelSpecs of a models.config file (local or on an object store); relative base
    paths are relative to the file's folder."""
    return parse_model_config(filesystems.read_text(path),
                              relative_to=posixpath.dirname(filesystems.absolute(path)))
