#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 45) each, one after another, seeding the corpora
# first, and prints one line per target: executions, corpus entries, crashes. Needs nightly
# and cargo-fuzz (`cargo install cargo-fuzz`). Logs go to fuzz/logs/<target>.log.
#   fuzz/run.sh            # every target
#   SECONDS_EACH=600 fuzz/run.sh phone email
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
each="${SECONDS_EACH:-45}"
"$here/seed.sh" >/dev/null
mkdir -p logs
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//'); fi
# NO_BUILD=1 runs what was built last, leaving cargo free for other work.
if [ -z "${NO_BUILD:-}" ]; then
  cargo +nightly fuzz build -s none >logs/build.log 2>&1 || { tail -20 logs/build.log; exit 1; }
fi
bin="$here/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
printf '%-22s %12s %8s %8s %s\n' target executions corpus crashes seconds
for t in "${targets[@]}"; do
  log="logs/$t.log"
  mkdir -p "artifacts/$t"
  "$bin/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$each" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
  printf '%-22s %12s %8s %8s %s\n' "$t" "${runs:-?}" "$corpus" "$crashes" "${secs:-?}"
done
