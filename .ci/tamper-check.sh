#!/usr/bin/env bash
# The frozen full bundle's self-test must fail (exit 1), naming what is missing, when a file
# it needs is deleted: open_clip's BPE vocabulary, or a bundled model file. Works on a
# hard-linked copy, run from another directory with an empty environment.
set -euo pipefail
bundle=$(realpath "$1")
app=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["app"])' "$bundle/BUILD-INFO.json")
work=$(mktemp -d -p "$(dirname "$bundle")" .tamper-XXXXXX)  # same file system: cp -al hard-links
trap 'rm -rf "$work"' EXIT

check() {  # check <relative path to delete> <text the failure must name>
  rm -rf "$work/b"
  cp -al "$bundle" "$work/b"
  rm "$work/b/$1"
  set +e
  (cd "$work" && env -i "$work/b/$app-selftest" >"$work/out" 2>"$work/err")
  status=$?
  set -e
  if [ "$status" -ne 1 ] || ! grep -q "FAILED.*$2" "$work/err" || grep -q Traceback "$work/err"; then
    echo "tamper-check: deleting $1 gave exit $status; stderr:" >&2
    cat "$work/err" >&2
    exit 1
  fi
  echo "tamper-check: deleting $1 -> exit 1: $(grep -m1 "FAILED.*$2" "$work/err")"
}

check _internal/open_clip/bpe_simple_vocab_16e6.txt.gz bpe_simple_vocab_16e6.txt.gz
model=$(cd "$bundle" && find models -mindepth 2 -type f ! -path 'models/_probes/*' ! -name golden.json | sort | head -1)
check "$model" "$(basename "$model")"
