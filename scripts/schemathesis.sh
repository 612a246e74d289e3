#!/usr/bin/env bash
# Fuzz the running API from its own OpenAPI document: no 500s, responses match their schemas.
# Usage: scripts/schemathesis.sh [seconds]   (needs the dev extras installed in .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-90}"
work="$(mktemp -d)"
port="${ACLAUDIT_FUZZ_PORT:-8765}"
export ACLAUDIT_DATABASE_URL="sqlite:///$work/fuzz.db"
bin=.venv/bin
token="$("$bin/aclaudit" token create --name fuzz --scope admin)"
"$bin/aclaudit" serve --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
"$bin/st" run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance \
  --max-time "$budget" \
  --workers 2 \
  --suppress-health-check all \
  || { echo "schemathesis found problems; server log:"; tail -50 "$work/server.log"; exit 1; }
