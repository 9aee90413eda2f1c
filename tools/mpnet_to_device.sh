#!/usr/bin/env bash
# Get MPNet-base onto the GPU machine through the device tool, whose calls carry at most 64 MiB each.
#   tools/mpnet_to_device.sh prepare [MPNET_DIR] [REPO]
# converts the weights to fp16 (219 MB; paperlib loads them back in fp32) and splits model.safetensors in four
# (`split -n 4 -d`, ~52 MiB each) into REPO/.carry/mp0 .. mp3 (REPO: the checkout the device tool sends, default
# /work/main; .carry/ must be git-ignored there); config and tokenizer files go to REPO/.carry/mpnet16/ with the
# SHA-256 of the fp16 file.  Then four consecutive device calls, back to back (/tmp stays while the machine is kept):
#   1-3: carry [".carry/mpI"],  command: mkdir -p /tmp/parts && cp .carry/mpI/part0I /tmp/parts/
#        (the first also carries .carry/data.tar.xz and copies it to /tmp: the fourth has no room left for it)
#   4:   carry [".carry/mp3", ".carry/mpnet16", ".carry/code"],  command: bash .carry/mpnet16/device_part.sh 3 && ...
# The fourth reassembles into /tmp/mpnet16 and checks the SHA-256 computed here (device_part.sh exits 2 on a mismatch).
set -euo pipefail
cmd=${1:-}; SRC=${2:-${PAPERLIB_MPNET_DIR:-$HOME/.cache/paperlib/all-mpnet-base-v2}}; REPO=${3:-/work/main}
[ "$cmd" = prepare ] || { echo "error: usage: tools/mpnet_to_device.sh prepare [MPNET_DIR] [REPO]" >&2; exit 2; }
[ -f "$SRC/model.safetensors" ] || { echo "error: $SRC has no model.safetensors; run tools/fetch_mpnet.sh first" >&2; exit 2; }
git -C "$REPO" check-ignore -q .carry/x || { echo "error: .carry/ is not git-ignored in $REPO (add it to .git/info/exclude)" >&2; exit 2; }
C="$REPO/.carry"; rm -rf "$C/mpnet16" "$C"/mp[0-3]; mkdir -p "$C/mpnet16"
PY=${PYTHON:-python3}
"$PY" - "$SRC" "$C/mpnet16" <<'PYEOF'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(src / "model.safetensors").items()}
save_file(tensors, str(dst / "model.fp16.safetensors"), metadata={"format": "pt"})
for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    if (src / f).is_file():
        shutil.copy(src / f, dst / f)
PYEOF
sha256sum "$C/mpnet16/model.fp16.safetensors" | cut -d' ' -f1 > "$C/mpnet16/model.safetensors.sha256"
(cd "$C/mpnet16" && split -n 4 -d model.fp16.safetensors part && rm model.fp16.safetensors)
for i in 0 1 2 3; do mkdir -p "$C/mp$i"; mv "$C/mpnet16/part0$i" "$C/mp$i/"; done
cat > "$C/mpnet16/device_part.sh" <<'SH'
# on the GPU machine: keep part I in /tmp/parts; with I = 3 also reassemble /tmp/mpnet16 and check its SHA-256
set -euo pipefail
i=$1; mkdir -p /tmp/parts; cp ".carry/mp$i/part0$i" /tmp/parts/; ls -la /tmp/parts
if [ "$i" = 3 ]; then
  mkdir -p /tmp/mpnet16; cp .carry/mpnet16/*.json .carry/mpnet16/vocab.txt /tmp/mpnet16/ 2>/dev/null || true
  cat /tmp/parts/part00 /tmp/parts/part01 /tmp/parts/part02 /tmp/parts/part03 > /tmp/mpnet16/model.safetensors
  got=$(sha256sum /tmp/mpnet16/model.safetensors | cut -d' ' -f1); want=$(cat .carry/mpnet16/model.safetensors.sha256)
  [ "$got" = "$want" ] || { echo "error: reassembled weights have sha256 $got, expected $want (a part is missing or stale: resend)" >&2; exit 2; }
  echo "mpnet16 reassembled, sha256 ok ($got)"
fi
SH
du -sh "$C"/mp[0-3] "$C/mpnet16"; cat "$C/mpnet16/model.safetensors.sha256"
