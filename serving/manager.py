"""Model versions in memory: load, poll, hot swap, status.

For each configured model the manager polls `<base_path>` for complete numeric version
folders, loads the versions its policy aspires to (and replays their warmup requests), and
only then unloads versions no longer aspired: a new version is available before the old
one goes (availability-preserving, as TF Serving's default). A version that fails to load
is kept in the status with its error (state END) and the versions already serving go on.
In-flight requests hold a reference to the servable they started on, so an unload never
fails them.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time

import grpc

from movierec.serving import versions as version_dirs
from movierec.serving import warmup
from movierec.serving.errors import ServingError, invalid_argument, not_found
from movierec.serving.model_config import ModelSpec
from movierec.serving.servable import Servable

log = logging.getLogger(__name__)

# ModelVersionStatus.State values (tensorflow_serving/apis/get_model_status.proto)
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclasses.dataclass
class VersionEntry:
    version: int
    path: str
    state: str = START
    error: ServingError | None = None
    servable: Servable | None = None


class ModelManager:
    def __init__(self, specs: list[ModelSpec], poll_seconds: float = 1.0, run_warmup: bool = True,
                 loader=Servable):
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        self.specs = {s.name: s for s in specs}
        self.poll_seconds = poll_seconds
        self.run_warmup = run_warmup
        self._loader = loader
        self._entries: dict[str, dict[int, VersionEntry]] = {s.name: {} for s in specs}
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()   # one poll or reload at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.poll_once()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - a poll failure must not stop future polls
                log.exception("model poll failed")

    def poll_once(self) -> None:
        with self._sync_lock:
            for spec in list(self.specs.values()):
                self._sync_model(spec)

    def reload(self, specs: list[ModelSpec]) -> None:
        """Serve this model list from now on (a reloaded model config file): new and changed
        models are loaded first, then the models no longer listed are unloaded, so that a
        model that stays listed is never without a version."""
        new = {s.name: s for s in specs}
        if len(new) != len(specs):
            raise ValueError(f"model names must be unique, got {[s.name for s in specs]}")
        with self._sync_lock:
            with self._lock:
                for name in new:
                    self._entries.setdefault(name, {})
                self.specs = {**self.specs, **new}
            for spec in new.values():
                self._sync_model(spec)
            with self._lock:
                for name in set(self.specs) - set(new):
                    del self._entries[name]
                    log.info("model %s: no longer in the model config; unloaded", name)
                self.specs = new

    def _sync_model(self, spec: ModelSpec) -> None:
        on_disk = version_dirs.list_versions(spec.base_path)
        aspired = spec.aspired(on_disk)
        entries = self._entries[spec.name]
        for v in aspired:
            if v not in entries:
                self._load(spec, v)
        with self._lock:
            serving_aspired = [v for v in aspired if entries[v].state == AVAILABLE]
            retire = [e for v, e in entries.items()
                      if e.state == AVAILABLE and v not in aspired] if serving_aspired else []
            for e in retire:
                e.state = END
                e.servable = None
                log.info("model %s: unloaded version %d", spec.name, e.version)

    def _load(self, spec: ModelSpec, version: int) -> None:
        path = version_dirs.version_dir(spec.base_path, version)
        entry = VersionEntry(version, path, LOADING)
        with self._lock:
            self._entries[spec.name][version] = entry
        started = time.perf_counter()
        try:
            servable = self._loader(spec.name, version, path)
            replayed = warmup.replay(servable, warmup.read_warmup_requests(path)) if self.run_warmup else 0
        except Exception as e:  # noqa: BLE001 - any load failure is reported in the status
            error = e if isinstance(e, ServingError) else ServingError(
                grpc.StatusCode.UNKNOWN, f"Failed to load version {version} of model {spec.name} "
                                          f"from {path}: {type(e).__name__}: {e}")
            with self._lock:
                entry.state, entry.error = END, error
            log.error("model %s: version %d failed to load: %s", spec.name, version, error.message)
            return
        with self._lock:
            entry.servable, entry.state = servable, AVAILABLE
        log.info("model %s: version %d available in %.2f s (%d warmup requests)", spec.name,
                 version, time.perf_counter() - started, replayed)

    # -- lookups --------------------------------------------------------------------------
    def _spec(self, name: str, request_repr: str) -> ModelSpec:
        spec = self.specs.get(name)
        if spec is None:
            raise not_found(f"Servable not found for request: {request_repr}")
        return spec

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable for a request: a version, a label, or (neither) the latest available."""
        if version is not None:
            self._spec(name, f"Specific({name}, {version})")
            with self._lock:
                entry = self._entries[name].get(version)
                if entry is None or entry.state != AVAILABLE:
                    raise not_found(f"Servable not found for request: Specific({name}, {version})")
                return entry.servable
        if label is not None:
            spec = self._spec(name, f"Latest({name})")
            if label not in spec.label_map:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            return self.servable(name, spec.label_map[label])
        self._spec(name, f"Latest({name})")
        with self._lock:
            available = [e for e in self._entries[name].values() if e.state == AVAILABLE]
            if not available:
                raise not_found(f"Servable not found for request: Latest({name})")
            return max(available, key=lambda e: e.version).servable

    def version_entries(self, name: str, version: int | None = None,
                        label: str | None = None) -> list[VersionEntry]:
        """Status rows, newest first (all versions ever seen, including failed and unloaded)."""
        spec = self.specs.get(name)
        if spec is None:
            raise not_found(f"Could not find any versions of model {name}")
        if label is not None:
            if label not in spec.label_map:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = spec.label_map[label]
        with self._lock:
            rows = sorted(self._entries[name].values(), key=lambda e: -e.version)
            if version is not None:
                rows = [e for e in rows if e.version == version]
                if not rows:
                    raise not_found(f"Could not find version {version} of model {name}")
            elif not rows:
                raise not_found(f"Could not find any versions of model {name}")
            return [dataclasses.replace(e) for e in rows]

    def model_names(self) -> list[str]:
        return sorted(self.specs)
