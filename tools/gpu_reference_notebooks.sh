#!/usr/bin/env bash
# The reference runs as executed notebooks: ONE `paperlib reproduce` call (paper preset, the nine local datasets,
# SEEDS seeds) on a GPU machine of the device tool, whose calls carry at most 64 MiB and last at most 10 minutes:
#   part NAME          keep the carried files .carry/NAME/* in /tmp/parts (model parts, wheels, data)
#   start SECONDS      install the wheels (carried in .whl/, or kept in /tmp/parts: papermill, ipykernel, nbclient,
#                      dask, distributed and their needs), reassemble MPNet-base (SHA-256 checked), unpack the
#                      data, check MPNet's SDPA path, then launch the run in its own session (setsid: it outlives
#                      the call while the machine is kept) and watch it SECONDS
#   wait SECONDS       watch again
#   pack               tar the run folder without models into $OUT (also done by start/wait once the run ended)
# The run goes through Dask's local cluster: one worker per visible GPU, pinned by CUDA_VISIBLE_DEVICES
# (WORKERS_PER_GPU=3: three workers share each GPU, so small datasets overlap); chains = 9 datasets x SEEDS.
# Settings (environment, for start): RUN (runs folder name, default mpnet-paper), MODEL (default MPNet-base;
# /tmp/models/all-MiniLM-L6-v2 for the 6-layer run), DEPTHS (every_other; all for MiniLM), SEED (0), SEEDS (3),
# WORKERS_PER_GPU (1), DATASETS (all), START_WITHIN (seconds after which no chain starts: the session's device
# time is fixed, and a chain cut off loses its M_0).  The wall time of the run is the log's last line ("wall N s").
# A run over several sessions goes seed by seed: each seed's chains and its transfer fusions (which prune every
# dataset's own M_0, and the M_0 stay on the GPU machine) must end in one session.  The seeds done before travel
# back as their run folders with their executed notebooks (what marks a chain complete):
#   tar -C results -cJf .carry/c5/RUN.resume.tar.xz --exclude=RUN/logs --exclude=RUN/README.md --exclude=RUN/summary RUN
# `part c5` keeps it in /tmp/parts and `start` unpacks it into the runs folder; then SEED=0 SEEDS=<done + 1> reruns
# nothing of the seeds done (06 keeps their saved transfer fusions without their M_0) and runs the next seed.
# Local side, before the calls (each call carries the checkout, ~16 MiB, plus at most ~48 MiB):
#   tools/mpnet_to_device.sh prepare; python tools/pack_data.py ../shared/datasets .carry/data.tar.xz
#   cat .carry/mp?/part0? > /tmp/mpnet.fp16 && split -n 6 -d /tmp/mpnet.fp16 /tmp/mpnet.part   # six 36.5 MB parts
#   mkdir .carry/c1 .. .carry/c6; mv /tmp/mpnet.part0I .carry/c(I+1)/; data.tar.xz into c1, the wheels (README of
#   the device tool: papermill, ipykernel, nbclient, nbformat, dask, distributed and their needs) split between c2
#   and c3; calls: `part c1` .. `part c6` (carry .carry/cN), then `start 480` (carry .carry/mpnet16 and, for the
#   MiniLM run, .carry/minilm16), `wait 560` until the run ends; a tarball over 15 MiB comes back in parts (cat them).
# The checkout itself is ~60 MB now, nearly all of it results/: for the calls, move results/ out of the checkout
# (`mv results /elsewhere`, back after the last call; nothing is committed meanwhile), and it travels at ~3.6 MB,
# leaving ~60 MB a call.  Then MiniLM takes two calls: .carry/p1 = minilm.part00 + minilm.part01 + minilm-files/ +
# data.tar.xz (56 MB), .carry/p2 = the wheels (18 MB): `part p1` (with any benchmark that needs no wheels), then
# `part p2; start ...` (2026-12-02, results/minilm-seeds-b).  MPNet-base (219 MB in fp16) in four 55 MB parts:
#   tools/mpnet_to_device.sh prepare DIR; mkdir .carry/c1 .. .carry/c4; mv .carry/mpI/part0I .carry/c(I+1)/mpnet.part0I
#   .carry/c5 = data.tar.xz + the wheels (28 MB); calls: `part c1` .. `part c4`, then `part c5` and `start` in one
#   call carrying [".carry/c5", ".carry/mpnet16"].
# MiniLM in parts instead (when the checkout is ~37 MiB): its fp16 model.safetensors split in two as
#   .carry/mA/minilm.part00, .carry/mB/minilm.part01, its config/tokenizer files and the SHA-256 of the whole file
#   in .carry/mB/minilm-files/; `part mA`, `part mB` keep them in /tmp/parts and `start` reassembles and checks them.
set -uo pipefail
mode=$1; arg=${2:-540}
R=/tmp/runs; mkdir -p "$R" /tmp/parts
# `wait` and `pack` follow the run `start` launched unless RUN is given
RUN=${RUN:-$(cat "$R/CURRENT" 2>/dev/null || echo mpnet-paper)}
export PAPERLIB_QUIET=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PAPERLIB_CACHE_DIR=/tmp/ref/cache
export PYTHONPATH=/tmp/code:/tmp/site

pack() {
  [ -d "$R/$RUN" ] || { echo "no run folder $R/$RUN"; return; }
  tar -C "$R" --exclude="$RUN/*/model" --exclude="$RUN/*/students" --exclude='*.lock' -cf - "$RUN" \
    | xz -T0 -6 > "/tmp/$RUN.tar.xz"
  sha256sum "/tmp/$RUN.tar.xz"
  split -b 15M -d "/tmp/$RUN.tar.xz" "$OUT/$RUN.tar.xz.part"   # a returned file may hold at most 16 MiB
  cp "$R/$RUN.log" "$OUT/" 2>/dev/null; ls -la "$OUT"
}

watch() {  # watch the run for $1 seconds or until it ended
  local t0; t0=$(date +%s)
  while [ ! -f "$R/$RUN.rc" ] && [ $(( $(date +%s) - t0 )) -lt "$1" ]; do sleep 10; done
  echo "== $RUN (rc: $(cat "$R/$RUN.rc" 2>/dev/null || echo running))"; tail -30 "$R/$RUN.log"
  nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
  if [ -f "$R/$RUN.rc" ]; then echo "the run ended"; pack; fi
}

case "$mode" in
  part) cp -r ".carry/$arg"/* /tmp/parts/ && ls -la /tmp/parts ;;
  start)
    wheels=$(ls .whl/*.whl /tmp/parts/*.whl 2>/dev/null)   # carried in .whl on this call, or kept by `part` calls
    [ -n "$wheels" ] || { echo "error: no wheels (papermill, ipykernel, nbclient, dask, distributed, ...)"; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $wheels || exit 2
    rm -rf /tmp/code && cp -r . /tmp/code && rm -rf /tmp/code/.carry   # the checkout is laid anew for each call
    mkdir -p /tmp/models /tmp/ref
    if ls /tmp/parts/mpnet.part* > /dev/null 2>&1; then
      mkdir -p /tmp/models/all-mpnet-base-v2
      cat /tmp/parts/mpnet.part* > /tmp/models/all-mpnet-base-v2/model.safetensors
      cp .carry/mpnet16/*.json .carry/mpnet16/vocab.txt /tmp/models/all-mpnet-base-v2/
      got=$(sha256sum /tmp/models/all-mpnet-base-v2/model.safetensors | cut -d' ' -f1)
      [ "$got" = "$(cat .carry/mpnet16/model.safetensors.sha256)" ] || { echo "error: MPNet weights sha256 $got differ: resend the parts"; exit 2; }
      (cd /tmp/code && python3 tools/check_mpnet_sdpa.py /tmp/models/all-mpnet-base-v2) > "$R/sdpa_check.log" 2>&1 \
        || { export PAPERLIB_MPNET_SDPA=0; echo "SDPA check failed: eager MPNet"; }
      cat "$R/sdpa_check.log"
    fi
    if ls /tmp/parts/minilm.part* > /dev/null 2>&1; then   # MiniLM in fp16 parts (45 MB does not fit one call)
      mkdir -p /tmp/models/all-MiniLM-L6-v2
      cat /tmp/parts/minilm.part* > /tmp/models/all-MiniLM-L6-v2/model.safetensors
      cp /tmp/parts/minilm-files/* /tmp/models/all-MiniLM-L6-v2/
      got=$(sha256sum /tmp/models/all-MiniLM-L6-v2/model.safetensors | cut -d' ' -f1)
      [ "$got" = "$(cat /tmp/models/all-MiniLM-L6-v2/model.safetensors.sha256)" ] \
        || { echo "error: MiniLM weights sha256 $got differ: resend the parts"; exit 2; }
    elif [ -d .carry/minilm16 ]; then
      rm -rf /tmp/models/all-MiniLM-L6-v2 && cp -r .carry/minilm16 /tmp/models/all-MiniLM-L6-v2
    fi
    tar -C /tmp/ref -xJf /tmp/parts/data.tar.xz || exit 2
    if [ -f "/tmp/parts/$RUN.resume.tar.xz" ]; then   # the complete chains of earlier sessions: skipped
      tar -C "$R" -xJf "/tmp/parts/$RUN.resume.tar.xz" || exit 2
      echo "resuming $RUN: $(ls -d "$R/$RUN"/seed-*/* 2>/dev/null | wc -l) chain folder(s) carried"
    fi
    rm -f "$R/$RUN.rc"; echo "$RUN" > "$R/CURRENT"
    args="--preset paper --datasets ${DATASETS:-all} --data-dir /tmp/ref/data --runs $R/$RUN"
    args="$args --model ${MODEL:-/tmp/models/all-mpnet-base-v2} --depths ${DEPTHS:-every_other}"
    args="$args --seed ${SEED:-0} --seeds ${SEEDS:-3} --workers-per-gpu ${WORKERS_PER_GPU:-1}"
    args="$args${START_WITHIN:+ --start-within $START_WITHIN}"
    echo "paperlib reproduce $args"
    (cd /tmp/code && setsid nohup bash -c "t0=\$(date +%s); python3 -m paperlib reproduce $args; rc=\$?; \
        echo \"wall \$(( \$(date +%s) - t0 )) s\"; echo \$rc > $R/$RUN.rc" > "$R/$RUN.log" 2>&1 < /dev/null &)
    watch "$arg" ;;
  wait) watch "$arg" ;;
  pack) pack ;;
  *) echo "error: usage: $0 part NAME | start SECONDS | wait SECONDS | pack" >&2; exit 2 ;;
esac
