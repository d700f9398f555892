#!/usr/bin/env bash
# `make test`: quality gates, then the whole suite. Uses DATABASE_URL, KEYSTORE_DATABASE_URL,
# CELERY_BROKER_URL and CACHE_URL when set, otherwise SQLite and the filesystem broker.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-true}"
py=.venv/bin/python

echo "== ruff"; $py -m ruff check . && $py -m ruff format --check .
echo "== mypy"; $py -m mypy
echo "== migrations"
$py manage.py makemigrations --check --dry-run
echo "== data maps"
$py manage.py sample_product install >/dev/null
$py manage.py check --database product
echo "== pytest (database: ${DATABASE_URL:-sqlite}, broker: ${CELERY_BROKER_URL:-filesystem://})"
set +e
$py -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests"; rc=0
fi
exit "$rc"
