#!/usr/bin/env bash
# genproto.sh regenerates proto/runnelpb from proto/runnel/v1/*.proto.
# protoc comes from the system (Debian: protobuf-compiler); the Go plugins are
# built at the versions pinned by the tool directives in go.mod.
# With --check it regenerates into a temporary folder and fails on any diff.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v protoc >/dev/null || { echo "genproto: protoc not found; install it with: apt-get install -y protobuf-compiler" >&2; exit 1; }

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc

out=proto/runnelpb
if [ "${1:-}" = "--check" ]; then
  out="$bin/out"
fi
mkdir -p "$out"
PATH="$bin:$PATH" protoc -I proto \
  --go_out="$out" --go_opt=paths=source_relative,Mrunnel/v1/runnel.proto=github.com/runnel-dev/runnel/proto/runnelpb \
  --go-grpc_out="$out" --go-grpc_opt=paths=source_relative,Mrunnel/v1/runnel.proto=github.com/runnel-dev/runnel/proto/runnelpb \
  proto/runnel/v1/*.proto
# paths=source_relative mirrors runnel/v1/ under the output folder; flatten it.
mv "$out"/runnel/v1/*.go "$out"/
rm -rf "$out/runnel"

if [ "${1:-}" = "--check" ]; then
  if ! diff -r proto/runnelpb "$out" >/dev/null; then
    diff -ru proto/runnelpb "$out" | head -40 >&2
    echo "genproto: proto/runnelpb is stale; run scripts/genproto.sh and commit the result" >&2
    exit 1
  fi
  echo "genproto: proto/runnelpb is current"
fi
