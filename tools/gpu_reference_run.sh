#!/usr/bin/env bash
# The reference run (paper preset, minilm, the nine local datasets) as run on one H200 through the device tool.
# Papermill is not on that machine, so the pipeline runs through the CLI there; the notebooks are executed
# afterwards on the returned run folders.  Expects .carry/data.tar.xz (texts cut to 1,000 characters, which
# max_length 128 never reaches) and .carry/minilm16 (the minilm weights in fp16, loaded back in fp32).
set -uo pipefail
RUNS=${RUNS:-runs/paper}
mkdir -p /tmp/ref && tar -C /tmp/ref -xJf .carry/data.tar.xz
export PAPERLIB_MINILM_DIR=$PWD/.carry/minilm16 PAPERLIB_QUIET=1 PAPERLIB_CACHE_DIR=/tmp/ref/cache PYTHONUNBUFFERED=1
COMMON="--preset ${PRESET:-paper} --model ${MODEL:-minilm} --data-dir /tmp/ref/data --out $RUNS --quiet"
DATASETS=${DATASETS:-"newsgroup dbpedia arxiv patent yahoo yelp agnews imdb amazon"}
start=$(date +%s)
stage() {  # stage NAME ARGS...: run one CLI stage for every dataset in parallel, wait, report failures
  local name=$1; shift
  local pids=() d
  for d in $DATASETS; do
    ( python -m paperlib "$name" --dataset "$d" $COMMON "$@" > "$RUNS/logs/$d.$name.log" 2>&1 \
      || echo "FAILED $name $d (see $RUNS/logs/$d.$name.log)" ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  echo "stage $name done at $(( $(date +%s) - start ))s"
}
mkdir -p "$RUNS/logs"
stage finetune
stage prune --strategies all
stage fuse --protocol within
stage fuse --protocol transfer
[ -n "${SKIP_DISTILL:-}" ] || stage distill --depths all
python -m paperlib table --runs "$RUNS" --save "$RUNS/summary" > "$RUNS/logs/table.log" 2>&1 || echo "FAILED table"
echo "wall $(( $(date +%s) - start ))s"
