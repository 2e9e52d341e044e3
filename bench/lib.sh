# Helpers shared by the benchmark scripts (source it).

# best OUT CMD...: the fastest wall time (seconds) of $RUNS runs of CMD;
# the stdout of the last run goes to OUT.
best() {
  local out=$1 b="" t
  shift
  for _ in $(seq 1 "${RUNS:-1}"); do
    local s=$(date +%s.%N)
    "$@" >"$out" 2>/dev/null
    t=$(python3 -c "print($(date +%s.%N) - $s)")
    if [ -z "$b" ] || python3 -c "import sys; sys.exit(0 if $t < $b else 1)"; then b=$t; fi
  done
  echo "$b"
}
