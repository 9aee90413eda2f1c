#!/usr/bin/env bash
# Device-call wrapper around gpu_mpnet_run.sh, whose run outlasts one call (10 min): `start SECONDS` launches it in
# its own session (setsid: it survives the call while the machine is kept) and watches it; `wait SECONDS` watches
# again.  Both stop watching after SECONDS or when the run ends, print the stage table, and, once it ended, pack
# the run folders without models into $OUT/<run name>.tar.gz (RUNS=/tmp/runs/<run name>).  Run from .carry/code.
set -uo pipefail
mode=$1; budget=${2:-540}; RUNS=${RUNS:-/tmp/runs/mpnet-paper}; mkdir -p "$RUNS/logs"
if [ "$mode" = start ]; then  # the repository copy is laid anew for each call: run from copies in /tmp
  rm -rf /tmp/code && cp -r . /tmp/code && mkdir -p /tmp/ref && tar -C /tmp/ref -xJf /tmp/data.tar.xz
  (cd /tmp/code && PYTHONPATH=/tmp/code setsid nohup bash -c "bash tools/gpu_mpnet_run.sh; touch $RUNS/logs/DONE" \
     > "$RUNS/logs/run.log" 2>&1 < /dev/null &)
fi
t0=$(date +%s)
while [ ! -f "$RUNS/logs/DONE" ] && [ $(( $(date +%s) - t0 )) -lt "$budget" ]; do sleep 5; done
cat "$RUNS/logs/run.log"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
[ -f "$RUNS/logs/DONE" ] && echo "run finished" || echo "run still going (partial results packed)"
if true; then
  tar -C "$(dirname "$RUNS")" --exclude='*/model' --exclude='*.pkl' -czf "$OUT/$(basename "$RUNS").tar.gz" "$(basename "$RUNS")"
  ls -la "$OUT"; cat "$RUNS/summary/"*.csv 2>/dev/null | head -40
fi
echo "stage table:"; cat "$RUNS/logs/stages.tsv" 2>/dev/null
