#!/usr/bin/env bash
# Installs what the tests and the local broker need on a fresh Debian machine: Java 17 and Maven (the
# broker), kcat (end-to-end tests with a client nobody here wrote), promtool (alert-rule checks).
# As root it uses apt-get; otherwise it names the packages to install and fails.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "deps.sh: missing tools; install the Debian packages: ${missing[*]}" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# --no-install-recommends keeps the prometheus package from pulling a web UI stack; promtool is in it.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# The Debian prometheus package starts a server on :9090; tests run their own, so stop the system one.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
