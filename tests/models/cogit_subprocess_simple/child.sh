#!/usr/bin/env bash
set -euo pipefail

# On SIGUSR1, write 100 lines: if this process's stdout went nowhere it would have died by now.
_pong() {
  for i in $(seq 100); do
    echo "${0} ($$) PONG (${i}/100)"
  done
}
trap _pong USR1

for i in $(seq 100); do
  echo "${0} ($$) SETTING UP (${i}/100)"
done

while true; do
  echo "${0} ($$) STILL HERE"
  sleep 0.2
done
