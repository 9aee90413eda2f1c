#!/usr/bin/env bash
# The 12-layer reference run (paper preset, MPNet-base, the nine local datasets) on one H200 through the device
# tool, started by tools/gpu_mpnet_launch.sh from a copy of the code in /tmp/code (cwd, PYTHONPATH).  Expects
# /tmp/mpnet16 (reassembled by tools/mpnet_to_device.sh's fourth call) and /tmp/ref/data (tools/pack_data.py:
# texts cut to 1,000 characters).  Stages run as nine parallel processes on the one GPU; each stage's end time goes to
# $RUNS/logs/stages.tsv.  Distillation: k* first, then every other depth (SPEC 6, 12 layers).
set -uo pipefail
RUNS=${RUNS:-/tmp/runs/mpnet-paper}
mkdir -p "$RUNS/logs"
export PAPERLIB_QUIET=1 PAPERLIB_CACHE_DIR=/tmp/ref/cache PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
MODEL=${MODEL:-/tmp/mpnet16}  # MODEL=/tmp/minilm16 RUNS=/tmp/runs/minilm-paper DEPTHS=all: the 6-layer run
# SDPA path for MPNet: check it against eager on the GPU first (bf16 forward + one backward); else run eager
if [ "$MODEL" = /tmp/mpnet16 ] && ! python3 tools/check_mpnet_sdpa.py "$MODEL" > "$RUNS/logs/sdpa_check.log" 2>&1; then export PAPERLIB_MPNET_SDPA=0; echo "SDPA check failed: eager MPNet"; fi
cat "$RUNS/logs/sdpa_check.log" 2>/dev/null
COMMON="--preset paper --model $MODEL --data-dir /tmp/ref/data --out $RUNS --quiet"
DATASETS=${DATASETS:-"newsgroup dbpedia arxiv patent yahoo yelp agnews imdb amazon"}
start=$(date +%s)
stage() {  # stage LABEL ARGS...: one CLI stage for every dataset in parallel
  local label=$1; shift
  local name=$1; shift
  local pids=() d
  for d in $DATASETS; do
    ( python3 -m paperlib "$name" --dataset "$d" $COMMON "$@" > "$RUNS/logs/$d.$label.log" 2>&1 \
      || echo "FAILED $label $d (see $RUNS/logs/$d.$label.log)" ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  printf '%s\t%s\n' "$label" "$(( $(date +%s) - start ))" >> "$RUNS/logs/stages.tsv"
  echo "stage $label done at $(( $(date +%s) - start ))s"
}
stage finetune finetune
stage prune prune --strategies all
stage fuse-within fuse --protocol within
stage fuse-transfer fuse --protocol transfer
[ -n "${SKIP_DISTILL:-}" ] || { stage distill-kstar distill --depths best; stage distill-other distill --depths ${DEPTHS:-every_other}; }
python3 -m paperlib table --runs "$RUNS" --save "$RUNS/summary" > "$RUNS/logs/table.log" 2>&1 || echo "FAILED table"
printf 'wall\t%s\n' "$(( $(date +%s) - start ))" >> "$RUNS/logs/stages.tsv"
echo "wall $(( $(date +%s) - start ))s"
