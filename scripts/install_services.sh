#!/usr/bin/env bash
# Installs the services the tests start themselves: PostgreSQL (server binaries only; the
# tests run a private server on 127.0.0.1 and stop it). Idempotent: does nothing when
# PostgreSQL's initdb is already present. Debian/Ubuntu (apt-get); root, or sudo without a password.
set -euo pipefail

if command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "finesweep: PostgreSQL is missing and apt-get is not available: install PostgreSQL (initdb, pg_ctl)" \
         "yourself for tests/test_postgres.py" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
        echo "finesweep: PostgreSQL is missing; run as root: apt-get install -y postgresql" >&2
        exit 0
    fi
fi
echo "finesweep: installing PostgreSQL (apt-get install postgresql)"
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null
