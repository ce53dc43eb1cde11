"""Model versions under a TF Serving model base path: `<base>/<numeric version>/`.

The layout (which folders count as complete versions) is part of the contract between the
pusher that writes versions and the server that loads them: it lives in
`movierec.contract`, re-exported here for the server's modules.
"""
from movierec.contract import is_complete, latest_version, list_versions, version_dir

__all__ = ["is_complete", "latest_version", "list_versions", "version_dir"]
