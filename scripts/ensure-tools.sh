#!/usr/bin/env bash
# Installs the Debian packages whose binaries the tests and benchmarks run, when they are missing.
# Idempotent: a tool already on the PATH is left alone, and nothing runs when every tool is present.
# Needs root (or sudo) and apt only when something is missing; otherwise it reports and carries on, and the
# tests decide (with CI=true a missing binary fails its tests instead of skipping them).
set -u

# Usage: ensure-tools.sh [binary:package ...]; without arguments, every tool of the test suite below.
# binary:package, one per line. Add tools here (e.g. prometheus:prometheus, amtool:prometheus-alertmanager).
TOOLS="
prometheus-blackbox-exporter:prometheus-blackbox-exporter
prometheus:prometheus
promtool:prometheus
prometheus-alertmanager:prometheus-alertmanager
amtool:prometheus-alertmanager
valgrind:valgrind
callgrind_control:valgrind
kubectl:kubectl
"

if [ $# -gt 0 ]; then
  TOOLS="$*"
fi

missing=()
for entry in $TOOLS; do
  binary=${entry%%:*}
  package=${entry#*:}
  if command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/bin/$binary" ] || [ -x "/usr/sbin/$binary" ]; then
    continue
  fi
  missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "ensure-tools: all tools present"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: missing ${missing[*]} and apt-get is not available; install them by hand"
  exit 0
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "ensure-tools: missing ${missing[*]}; run as root (or with passwordless sudo) to install them"
    exit 0
  fi
fi

echo "ensure-tools: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Do not start services from package scripts (containers have no init; tests start what they need).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null && "${as_root[@]}" chmod +x "$policy" \
    && created_policy=1
fi
"${as_root[@]}" apt-get update -qq || echo "ensure-tools: apt-get update failed (offline?); trying the cached lists"
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
  || echo "ensure-tools: could not install ${missing[*]}"
if [ "$created_policy" -eq 1 ]; then
  "${as_root[@]}" rm -f "$policy"
fi
exit 0
