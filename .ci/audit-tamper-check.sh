#!/usr/bin/env bash
# `mlfreeze audit` and `mlfreeze release` must refuse a damaged or unverified bundle, naming the file:
# on a hard-linked copy of a built bundle (the original is never written), each damage below must
# give the stated exit code from audit and from release. Usage:
#   MLFREEZE=.nox/build-linux-cuda/bin/mlfreeze bash .ci/audit-tamper-check.sh dist/<app>-<v>-<platform>-full
set -euo pipefail
bundle=$(realpath "$1")
mlfreeze=${MLFREEZE:-mlfreeze}
name=$(basename "$bundle")
work=$(mktemp -d -p "$(dirname "$bundle")" .audit-tamper-XXXXXX)  # same file system: cp -al hard-links
trap 'rm -rf "$work"' EXIT

expect() {  # expect <code> <text the output must name> <command...>
  local code=$1 text=$2
  shift 2
  set +e
  "$@" >"$work/out" 2>&1
  local status=$?
  set -e
  if [ "$status" -ne "$code" ] || ! grep -qF -- "$text" "$work/out" || grep -q Traceback "$work/out"; then
    echo "audit-tamper-check: '$*' gave exit $status (expected $code, naming $text):" >&2
    cat "$work/out" >&2
    exit 1
  fi
}

fresh() {  # a new hard-linked copy in its own dist folder
  rm -rf "$work/dist"
  mkdir "$work/dist"
  cp -al "$bundle" "$work/dist/$name"
  copy="$work/dist/$name"
}

replace() {  # replace <file> <content source>: never write through the hard link
  local tmp="$1.tmp"
  cat >"$tmp"
  rm -f "$1"
  mv "$tmp" "$1"
}

check() {  # check <code> <text> <description>: audit and release of $copy
  expect "$1" "$2" "$mlfreeze" audit "$copy"
  expect "$1" "$2" "$mlfreeze" release "$work/dist"
  test ! -e "$work/dist/release"
  echo "audit-tamper-check: $3 -> audit and release exit $1 naming $2"
}

expect 0 "audit: OK $name" "$mlfreeze" audit "$bundle"

model=$(cd "$bundle" && find models -mindepth 2 -type f ! -path 'models/_probes/*' ! -name golden.json | sort | head -1)
fresh
head -c 1000 "$copy/$model" | replace "$copy/$model"
check 3 "$model" "a model file truncated ($model)"

fresh
rm "$copy/$model"
check 3 "$model" "a model file deleted ($model)"

fresh
echo extra >"$copy/_internal/extra.so"
check 3 "_internal/extra.so" "an extra file"

nvrtc=$(cd "$bundle" && find _internal -name 'libnvrtc-builtins.so*' -type f | sort | head -1)
if [ -n "$nvrtc" ]; then
  fresh
  rm "$copy/$nvrtc"
  check 3 "$(basename "$nvrtc")" "$nvrtc removed"
fi

fresh
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d["verification"] = None; print(json.dumps(d))' \
  "$copy/BUILD-INFO.json" | replace "$copy/BUILD-INFO.json"
check 1 "verification is missing" "verification: null"

fresh
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d["verification"]["set"] = "default"; print(json.dumps(d))' \
  "$copy/BUILD-INFO.json" | replace "$copy/BUILD-INFO.json"
check 1 "for set 'default'" "verification of another set"
