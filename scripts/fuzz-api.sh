#!/usr/bin/env bash
# Fuzzes the HTTP API with schemathesis against its own OpenAPI document,
# authenticated as the bootstrap owner, on the in-memory store (or on
# PostgreSQL when FUZZ_DATABASE_URL is set). Fails on any 5xx, any
# undocumented status and any response that breaks the schema.
#
#   scripts/fuzz-api.sh            # 50 examples per operation
#   MAX_EXAMPLES=500 scripts/fuzz-api.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES="${MAX_EXAMPLES:-50}"
SCHEMATHESIS_VERSION="4.32.5"
VENV="${SCHEMATHESIS_VENV:-target/schemathesis-venv}"
PORT="${FUZZ_PORT:-18089}"
BASE="http://127.0.0.1:${PORT}"

if [ ! -x "$VENV/bin/schemathesis" ] || ! "$VENV/bin/schemathesis" --version | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  # --clear: a venv moved or copied from elsewhere has scripts that point
  # at its old path; start it again rather than reuse them.
  python3 -m venv --clear "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin picloud
BIN="${CARGO_TARGET_DIR:-target}/debug/picloud"
TOKEN="fuzz_$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
LOG="$(mktemp)"
env -u DATABASE_URL PICLOUD_LISTEN="127.0.0.1:${PORT}" PICLOUD_BOOTSTRAP_TOKEN="$TOKEN" \
  ${FUZZ_DATABASE_URL:+DATABASE_URL="$FUZZ_DATABASE_URL"} RUST_LOG=warn \
  "$BIN" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -f "$LOG"' EXIT

for _ in $(seq 1 50); do
  curl -fs "$BASE/healthz" >/dev/null && break
  sleep 0.2
done
curl -fs "$BASE/healthz" >/dev/null || { echo "server did not start:"; cat "$LOG"; exit 1; }

# Seed the data the documented examples name, so the fuzzer reaches real logic.
curl -fs -X POST "$BASE/api/v1/admin/apps" -H "Authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"slug":"demo","name":"Demo"}' >/dev/null

# FUZZ_SHOW_WARNINGS=1 shows schemathesis' coverage warnings (off in CI).
WARNINGS=(--warnings off)
[ -n "${FUZZ_SHOW_WARNINGS:-}" ] && WARNINGS=()

# Revoking tokens is excluded: the stateful phase would revoke the very token
# it authenticates with (tests/members_api.rs covers revocation). The script
# endpoints (/run) are documented but not fuzzed: a fuzzer-deployed script
# that throws answers its own 500, which is the script's, not the server's.
"$VENV/bin/schemathesis" run "$BASE/api/v1/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path '/api/v1/admin/tokens/{id}' \
  --exclude-path-regex '^/run/' \
  --max-examples "$MAX_EXAMPLES" \
  --seed "${FUZZ_SEED:-20261122}" \
  "${WARNINGS[@]}"

if grep -qiE 'panicked|internal error' "$LOG"; then
  echo "the server logged a panic or an internal error during fuzzing:"
  cat "$LOG"
  exit 1
fi
echo "fuzz: no 5xx, no undocumented status, no schema violation"
