#!/usr/bin/env bash
# Installs the Debian packages rcsd's tests (and, with "kamailio", its
# benchmarks) need, when they are missing. Runs apt-get as root (directly or
# through sudo); fails loudly rather than letting tests skip.
set -euo pipefail
need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v svwar >/dev/null 2>&1 || need+=(sipvicious)
command -v kamailio >/dev/null 2>&1 || need+=(kamailio) # test/e2e/dispatcher_test.go
if [[ "${1:-}" == kamailio ]]; then
  command -v sipsak >/dev/null 2>&1 || need+=(sipsak)
  [[ -n "$(find /usr/lib -name db_sqlite.so -path "*kamailio*" 2>/dev/null | head -1)" ]] || need+=(kamailio-sqlite-modules)
  [[ -n "$(find /usr/lib -name msilo.so -path '*kamailio*' 2>/dev/null | head -1)" ]] || need+=(kamailio-extra-modules)
  command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
fi
[[ ${#need[@]} -eq 0 ]] && exit 0
echo "installing: ${need[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to apt-get install ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q "${need[@]}"
