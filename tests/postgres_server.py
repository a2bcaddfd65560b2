"""A private PostgreSQL server on 127.0.0.1 for tests and benchmarks: a fresh cluster in a
temporary folder, at a free port, stopped and removed afterwards. Needs Debian's `postgresql`
package (scripts/install_services.sh). As root, the server runs as the `postgres` user (it
refuses to run as root)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def pg_tool(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's `{name}` was not found: run scripts/install_services.sh "
                           "(apt-get install postgresql)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def private_postgres(database: str = "finesweep") -> Iterator[dict[str, object]]:
    """Yield ``{"url": ..., "pid": ...}`` of database ``database`` on a private server."""
    import psycopg

    folder = Path(tempfile.mkdtemp(prefix="fs-pg-"))
    data = folder / "data"
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_owner, *command], check=True, capture_output=True, timeout=120)

    run(pg_tool("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}"
    run(pg_tool("pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-o", options, "-w", "start")
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {database}")
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield {"url": f"postgresql://postgres@127.0.0.1:{port}/{database}", "pid": pid}
    finally:
        run(pg_tool("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
