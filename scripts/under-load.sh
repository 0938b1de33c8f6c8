#!/usr/bin/env bash
# Runs a command while N extra processes keep CPUs busy, to find tests that assume a quiet machine.
#
#   bash scripts/under-load.sh [-n N] [-m MINUTES] -- COMMAND [ARGS...]
#   bash scripts/under-load.sh -n 2 -- npm run jest -- test/reload.test.ts test/shutdown.test.ts
#
# N (default: the number of CPUs) burners spin `node` at normal priority, competing with the
# command as a busy CI machine does. They stop when the command ends (or this script is
# interrupted), and each also stops on its own when this script is gone (even after a SIGKILL) or
# after MINUTES (default 60): a burner never outlives its run. Nothing to install: only node.
# Exits with the command's status.
set -euo pipefail

burners=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
minutes=60
usage() {
  echo "usage: $0 [-n BURNERS] [-m MAX_MINUTES] -- COMMAND [ARGS...]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    -n) burners=${2:-}; shift 2 || usage ;;
    -m) minutes=${2:-}; shift 2 || usage ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || usage
case "$burners" in '' | *[!0-9]*) echo "$0: -n takes a whole number of burners (0 to 64), got '$burners'" >&2; exit 2 ;; esac
case "$minutes" in '' | *[!0-9]* | 0) echo "$0: -m takes a whole number of minutes >= 1, got '$minutes'" >&2; exit 2 ;; esac
[ "$burners" -le 64 ] || { echo "$0: -n takes a whole number of burners (0 to 64), got $burners" >&2; exit 2; }

# A busy loop that looks up every few million turns whether its parent still lives and whether
# its time is up (a timer would never fire inside a busy loop).
burn='const parent = Number(process.argv[1]); const end = Date.now() + Number(process.argv[2]) * 60_000;
for (let i = 1; ; i++) {
  if (i % 5_000_000 !== 0) continue;
  if (Date.now() > end) break;
  try { process.kill(parent, 0); } catch { break; }
}'

pids=()
stop_burners() {
  if [ ${#pids[@]} -gt 0 ]; then kill "${pids[@]}" 2>/dev/null || true; fi
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}
trap stop_burners EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ((i = 0; i < burners; i++)); do
  node -e "$burn" "$$" "$minutes" &
  pids+=("$!")
done
echo "under-load.sh: $burners burner(s) running (pids ${pids[*]:-none}) while: $*" >&2

status=0
"$@" || status=$?
stop_burners
exit "$status"
