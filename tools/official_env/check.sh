#!/usr/bin/env bash
# Rebuild the official-environment fixtures and check that tests/fixtures/official_env holds exactly them.
# Usage: tools/official_env/check.sh PYTHON_WITH_TORCH [PartiPrompts.tsv]. Skips (exit 0) when the side
# environment cannot be built or PartiPrompts.tsv is absent; exit 1 when the fixtures differ.
set -uo pipefail
cd "$(dirname "$0")/../.."
py=$1
parti=${2:-../shared/data/partiprompts/PartiPrompts.tsv}
if [ ! -f "$parti" ]; then
  echo "official-env: $parti not found, fixture check skipped"; exit 0
fi
if ! side=$(timeout 900 "$py" tools/official_env/build_env.py | tail -1) || [ ! -x "$side" ]; then
  echo "official-env: the side environment could not be built, fixture check skipped"; exit 0
fi
bpe=$("$py" -c 'import open_clip.tokenizer as t; print(t.default_bpe())')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
timeout 900 "$side" tools/official_env/make_fixtures.py --out "$out" --partiprompts "$parti" --bpe "$bpe" \
  --compare-with tests/fixtures/official_env 2> >(grep -v "Token indices sequence length" >&2)
