#!/usr/bin/env bash
# Regenerates the committed Python stubs from proto/marrowscope/v1/*.proto.
# Usage: scripts/gen_proto.sh          regenerate in place
#        scripts/gen_proto.sh --check  fail (exit 1) if regenerating would change anything
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

generate() {  # $1 = output root (a copy of proto/)
  "$PY" -m grpc_tools.protoc -I proto \
    --python_out="$1" --pyi_out="$1" --grpc_python_out="$1" \
    proto/marrowscope/v1/*.proto
}

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  status=0
  for f in "$tmp"/marrowscope/v1/*_pb2*.py*; do
    rel=marrowscope/v1/$(basename "$f")
    if ! cmp -s "$f" "proto/$rel"; then
      echo "gen_proto: proto/$rel is stale; run scripts/gen_proto.sh" >&2
      status=1
    fi
  done
  for f in proto/marrowscope/v1/*_pb2*.py*; do
    [ -e "$tmp/marrowscope/v1/$(basename "$f")" ] || { echo "gen_proto: $f has no .proto" >&2; status=1; }
  done
  [ "$status" = 0 ] && echo "gen_proto: generated stubs are up to date"
  exit "$status"
fi

rm -f proto/marrowscope/v1/*_pb2*.py proto/marrowscope/v1/*_pb2*.pyi
generate proto
echo "gen_proto: regenerated $(ls proto/marrowscope/v1/*_pb2*.py* | wc -l) files"
