#!/usr/bin/env bash
# `make run`: migrate, load demo data, then web + Celery worker + Celery beat in the
# foreground. Ctrl-C (or any one of them dying) stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-true}"
py=.venv/bin/python

$py manage.py sample_product install   # the demo's product database: the sample health app's tables
$py manage.py migrate --noinput
$py manage.py migrate --database keystore --noinput
$py manage.py createcachetable
$py manage.py seed_demo

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo "Stopping web, worker and beat..."
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap cleanup INT TERM EXIT

$py manage.py runserver 127.0.0.1:8000 --noreload & pids+=($!)
$py -m celery -A config worker --loglevel=INFO --concurrency=2 --hostname="quanyi@%h" & pids+=($!)
$py -m celery -A config beat --loglevel=INFO & pids+=($!)
echo "Quanyi is running: http://127.0.0.1:8000/ (admin: /admin/, API docs: /api/docs/). Ctrl-C stops it."
wait -n "${pids[@]}"
