#!/usr/bin/env bash
# Fuzz the running API from its own OpenAPI document: no 500s, responses match their schemas.
# Two runs: the API (/v1 ...) with an admin token, then /scim/v2 with a `scim` token as an IdP
# has it, where every refusal must also be a SCIM Error message (scripts/schemathesis_scim.py).
# Usage: scripts/schemathesis.sh [seconds] [scim seconds]   (needs the dev extras in .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-90}"
scim_budget="${2:-$(( (budget + 1) / 2 ))}"
work="$(mktemp -d)"
port="${ACLAUDIT_FUZZ_PORT:-8765}"
export ACLAUDIT_DATABASE_URL="sqlite:///$work/fuzz.db"
bin=.venv/bin
token="$("$bin/aclaudit" token create --name fuzz --scope admin)"
scim_token="$("$bin/aclaudit" token create --name fuzz-idp --scope scim)"
"$bin/aclaudit" serve --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
failed() { echo "schemathesis found problems ($1); server log:"; tail -50 "$work/server.log"; exit 1; }
"$bin/st" run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $token" \
  --exclude-path-regex '^/scim/' \
  --checks not_a_server_error,response_schema_conformance \
  --max-time "$budget" \
  --workers 2 \
  --suppress-health-check all \
  || failed "API"
SCHEMATHESIS_HOOKS=scripts/schemathesis_scim.py "$bin/st" run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $scim_token" \
  --include-path-regex '^/scim/' \
  --checks not_a_server_error,response_schema_conformance,scim_error_document \
  --max-time "$scim_budget" \
  --workers 2 \
  --suppress-health-check all \
  || failed "/scim/v2"
