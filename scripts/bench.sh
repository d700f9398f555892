#!/usr/bin/env bash
# `make bench`: every benchmark in benchmarks/, each printing ratios against a baseline
# measured in the same run. Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-true}"
.venv/bin/python -m benchmarks "$@"
