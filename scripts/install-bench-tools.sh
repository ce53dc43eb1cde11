#!/bin/sh
# Load generators in C for benchmarks/serving.py (not needed by `make run` or `make test`):
# wrk for REST, h2load (nghttp2-client) for gRPC. Debian/Ubuntu packages.
set -e
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get install -y wrk nghttp2-client
