# Sourced by scripts/rebuild-data and scripts/build-pool: their unit of work.
#
# step NAME DONE-PATH COMMAND...: run COMMAND unless DONE-PATH exists, logging to $logs/NAME.log; messages start
# with $tag (the calling script's name). A failure prints the log's end and returns 1, so `set -e` stops the lane.
step() {
  local name="$1" done="$2"; shift 2
  if [ -e "$done" ]; then echo "$tag: $name: already there ($done)"; return; fi
  echo "$tag: $name: $(date +%H:%M:%S) start (log: $logs/$name.log)"
  # A subshell lowered with renice runs a command or one of the caller's functions alike (nice runs only programs).
  if ! ( renice -n 5 -p "$BASHPID" > /dev/null; "$@" ) > "$logs/$name.log" 2>&1; then
    echo "$tag: $name FAILED; the end of $logs/$name.log:" >&2; tail -20 "$logs/$name.log" >&2; return 1
  fi
  echo "$tag: $name: $(date +%H:%M:%S) done"
}
