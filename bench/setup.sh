#!/usr/bin/env bash
# The benchmark's system packages, installed where missing: wrk (the HTTP load generator),
# redis-server (the peer stack's rate-limit store) and nginx (scenario N, the proxy hop's anchor:
# Debian's nginx-light). apt-get needs root: run as root, or with sudo.
set -euo pipefail
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || need+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "bench: installing ${need[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
  || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${need[@]}" >/dev/null; }
