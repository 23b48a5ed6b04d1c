#!/usr/bin/env bash
# Installs what borgpull's demo and tests need on a fresh Debian 12 machine (as root):
# the system packages, then the npm dependencies, then a build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "borgpull: run this as root (it installs packages and builds network and mount namespaces)" >&2
  exit 1
fi
need=()
for pair in borg:borgbackup sshfs:sshfs sshd:openssh-server ssh:openssh-client fusermount3:fuse3 ip:iproute2 unshare:util-linux setpriv:util-linux tar:tar python3:python3 ps:procps openssl:openssl systemd-analyze:systemd dpkg-deb:dpkg; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "borgpull: installing ${need[*]} ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npx tsc -b
