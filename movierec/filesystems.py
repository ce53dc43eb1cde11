"""Object-store schemes for TensorFlow's file system, and a truthful exit after using them.

Every data, artifact and model path goes through `tf.io.gfile` / TFX `fileio`, which
dispatch on the path's scheme. TensorFlow 2.16 has local paths, `gs://` and `hdfs://`
built in; `s3://` comes from tensorflow-io's file-system plug-in library, which registers
it when `tensorflow_io` is imported. `ensure(*paths)` imports the plug-in package only
when a path needs it (TensorFlow itself is imported only then, too), and fails with the
path and the package to install when it is missing.

Beam's own file system (ExampleGen's, StatisticsGen's and Transform's Beam I/O) handles
`s3://` separately, through boto3 (`apache-beam[aws]`), configured by the AWS
environment variables (`AWS_ENDPOINT_URL_S3`, ...) or `--s3_*` Beam options.

The exit: tensorflow-io 0.37.1, the release for TensorFlow 2.16, aborts every process that
made an S3 request when the process exits ("pure virtual method called", SIGABRT, exit
status 134): the AWS SDK's curl handle container is destroyed among the C++ static
destructors after the SDK's logging it calls into is already gone (tensorflow/io issue
2039; fixed in tensorflow/io pull request 2120, which no release for TensorFlow 2.16
carries). The work is complete by then, but the status is wrong: an orchestrator would
mark a finished Kubeflow step as failed, a shell script would stop. `exit_now(code)` ends
the process the way the interpreter would (non-daemon threads joined, `atexit` functions
run, streams flushed) and then leaves with `os._exit(code)` before the C++ static
destructors run. Entry points that may have used S3 end through `finish(code)`, which
does that only when a plug-in scheme was used.
"""
from __future__ import annotations

import atexit
import importlib
import logging
import os
import sys
import threading

# scheme -> (module whose import registers it with TensorFlow, the package that provides it)
PLUGIN_SCHEMES = {"s3": ("tensorflow_io", "tensorflow-io==0.37.1")}

_used_plugin_schemes: set[str] = set()


def scheme(path: str) -> str:
    """'s3' for 's3://bucket/key', '' for a local path."""
    head, sep, _ = str(path).partition("://")
    return head.lower() if sep else ""


def ensure(*paths: str | None) -> list[str]:
    """Makes TensorFlow's file system handle every path given (None and local paths are
    skipped); returns the plug-in schemes among them.

    Raises RuntimeError naming the path when its scheme needs a package that is not
    installed, or that did not register the scheme."""
    needed = {}
    for path in paths:
        if path and scheme(path) in PLUGIN_SCHEMES:
            needed.setdefault(scheme(path), path)
    if not needed:
        return []
    import tensorflow as tf  # noqa: PLC0415 (only when an object store is used)

    for name, path in sorted(needed.items()):
        module, package = PLUGIN_SCHEMES[name]
        if name not in tf.io.gfile.get_registered_schemes():
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise RuntimeError(f"{path}: TensorFlow has no {name}:// file system; "
                                   f"install {package} (import {module} failed: {e})") from e
            if name not in tf.io.gfile.get_registered_schemes():
                raise RuntimeError(f"{path}: importing {module} did not register {name}:// with TensorFlow "
                                   f"(registered: {sorted(tf.io.gfile.get_registered_schemes())})")
        _used_plugin_schemes.add(name)
    return sorted(needed)


def used_plugin_schemes() -> list[str]:
    """The plug-in schemes `ensure` has handled in this process."""
    return sorted(_used_plugin_schemes)


def exit_code(exit_exception: SystemExit) -> int:
    """The status the interpreter gives for `SystemExit(code)`: None is 0, an int is
    itself, anything else is printed to stderr and gives 1."""
    code = exit_exception.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_now(code: int) -> None:
    """Ends the process with status `code` after Python's own shutdown work (non-daemon
    threads joined, `atexit` functions run, logging and stdio flushed), skipping the C++
    static destructors where tensorflow-io's S3 plug-in aborts. Does not return."""
    try:
        current = threading.current_thread()
        for thread in threading.enumerate():
            if thread is not current and not thread.daemon and thread is not threading.main_thread():
                thread.join()
        atexit._run_exitfuncs()  # what the interpreter runs at exit; includes logging.shutdown
        logging.shutdown()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        os._exit(code)


def finish(code: int) -> int:
    """For an entry point's last line: `sys.exit(filesystems.finish(code))`. Returns `code`
    when no plug-in scheme was used; otherwise ends the process with it (`exit_now`)."""
    if _used_plugin_schemes:
        exit_now(code)
    return code


def absolute(path: str) -> str:
    """`path` made absolute when local; a URL (`s3://...`, `gs://...`) is already absolute."""
    return path if scheme(path) else os.path.abspath(path)


def read_text(path: str) -> str:
    """The text of a small file (a config file) on any file system TensorFlow has (local
    paths without importing TensorFlow). Raises OSError naming the path when it cannot be
    read, whichever file system refused it."""
    if not scheme(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    ensure(path)
    import tensorflow as tf  # noqa: PLC0415 (only for URLs)

    try:
        with tf.io.gfile.GFile(path, "r") as f:
            return f.read()
    except tf.errors.OpError as e:
        raise OSError(f"{path}: {e.message}") from None
