#!/usr/bin/env bash
# One call of the device tool does a whole GPU step: tests, then benchmarks/tables, results packed under $OUT.
#
#   make device-stage                       # here: wheels the GPU image lacks + the datasets of the mini tables
#   device run (carry [".device"]):  source .device/env.sh && bash scripts/gpu_session.sh tests bench
#
# Steps (any order, any subset): tests (GPU-tier pytest; tests@path1,path2 for some files), bench (every
# speed suite, --quick; bench-<suite> for one), figures (FLuRKA Figs. 1/4/5), tables (every paper table at
# SCALE=mini; one call holds ~10 minutes, so name tables one by one, table-glue, ..., or parts of one:
# table-glue@pretrain-full,cola-full,sst2-full). Each step logs to $OUT/<step>.log; results/ comes back as
# $OUT/results.tgz (unpack it at the repository root, then commit: the files carry their own provenance).
#
# Environment: SEEDS="0 1" runs every table row once per seed (default 0). STREAMS=3 runs a table's rows three at
# a time on the GPU (run_table.py --streams: mini's small models leave an H200 mostly idle). DEADLINE_S=540 stops the steps when
# that many seconds have passed (the one running is interrupted, later ones are skipped), so the results and run
# folders are still packed before the device tool's per-call limit; rows cut short are named missing when the
# table is rebuilt from the runs (scripts/make_table.py <table>-mini).
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
# results name the commit staged by `make device-stage` (the machine's .git is older than the tree it runs)
if [[ -f .device/commit ]]; then export FLURKA_COMMIT=$(cat .device/commit); fi
echo "commit: ${FLURKA_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}"
mkdir -p "$OUT"
status=0
deadline=$((SECONDS + ${DEADLINE_S:-86400}))
step() {  # step NAME CMD...: run, log, remember failure, continue with the next step; all under the deadline
  local name=$1
  shift
  local left=$((deadline - SECONDS))
  if ((left <= 0)); then
    echo "== $name: skipped, DEADLINE_S passed: $*" | tee -a "$OUT/$name.log"
    status=1
    return
  fi
  echo "== $name ($((left))s left): $*" | tee -a "$OUT/$name.log"
  # SIGINT first: Python unwinds (a half-written checkpoint is never renamed into place); KILL 20 s later
  timeout --signal=INT --kill-after=20 "$left" "$@" 2>&1 | tee -a "$OUT/$name.log" || status=1
}
for what in "$@"; do
  case $what in
    tests|tests@*)  # correctness over many shapes: one kernel config each, no autotuning time (the benchmarks tune);
      # tests@path1,path2 runs the GPU tier of those test files or folders only
      paths=${what#tests@}; [[ $paths == "$what" ]] && paths="tests/ops,tests/attention,tests/train"
      step tests env FLURKA_FLASH_TUNE=first FLURKA_AUTOTUNE=0 \
        python3 -m pytest -q -m gpu -p no:cacheprovider ${paths//,/ } ;;
    bench)
      for suite in flash scfa lightning flurka; do step bench python3 scripts/bench.py "$suite" --quick; done ;;
    bench-*)  # one speed suite, bench-<suite> (BENCH_ARGS, default --quick: "" runs the full sweep)
      step bench python3 scripts/bench.py "${what#bench-}" ${BENCH_ARGS---quick} ;;
    figures)
      for suite in flurka_ablation flurka_vs_flash flurka_rank; do step figures python3 scripts/bench.py "$suite"; done ;;
    tables)
      for table in wikitext103 scfa scfa-mnist scfa-shakespeare uptrain time-budget glue lra wmt imagenet; do
        step tables python3 scripts/run_table.py "table-$table" --scale mini ${STREAMS:+--streams "$STREAMS"} \
          logger=none trainer.progress=false --seeds ${SEEDS:-0}
      done ;;
    scaling) step scaling python3 scripts/bench.py distributed ;;  # needs the 2-GPU kind (nvidia-h200-x2)
    table-*)  # table-<name> or table-<name>@row1,row2 (a part of a table; the others' runs are kept)
      rows=${what#*@}; [[ $rows == "$what" ]] && rows=""
      # --seeds last: it takes one or more values and would swallow the overrides after it
      step tables python3 scripts/run_table.py "${what%%@*}" --scale mini ${rows:+--rows "$rows"} \
        ${STREAMS:+--streams "$STREAMS"} logger=none trainer.progress=false --seeds ${SEEDS:-0} ;;
    *) echo "unknown step '$what' (tests[@paths], bench, bench-<suite>, figures, tables, table-<name>[@rows], scaling)" >&2
       exit 2 ;;
  esac
done
[[ -d results ]] && tar czf "$OUT/results.tgz" results
# the run folders without checkpoints: `scripts/make_table.py <table>-mini` rebuilds a table from runs of
# several calls once they are unpacked here
[[ -d runs ]] && tar czf "$OUT/runs.tgz" --exclude=checkpoints --exclude=wandb runs
exit $status
