#!/usr/bin/env bash
# Installs the Debian packages the tests and `make run` need: python3-venv (the
# project virtualenv), PostgreSQL 15,
# Redis 7, Prometheus (and promtool), Alertmanager (and amtool), shellcheck
# (actionlint runs it over workflow scripts), Chromium (browser tests) and
# nodejs (the OpenAPI documents' patterns are checked as ECMA-262 reads them).
# Idempotent: does nothing when they are already present, so `make setup`
# stays fast on a warm machine.
set -euo pipefail

need=()
# Debian's python3 has no ensurepip: `python3 -m venv` (scripts/setup-deploy.sh)
# fails without python3-venv.
dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q "install ok installed" || need+=(python3-venv)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v redis-server >/dev/null || need+=(redis-server)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "Installing system packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts services on install where it can; the project runs its own
# servers on loopback, so stop any that came up.
$SUDO service redis-server stop >/dev/null 2>&1 || true
$SUDO service prometheus stop >/dev/null 2>&1 || true
$SUDO service prometheus-alertmanager stop >/dev/null 2>&1 || true
