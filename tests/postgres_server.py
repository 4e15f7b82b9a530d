"""A throwaway PostgreSQL server on 127.0.0.1 for the tests: Debian's `postgresql` binaries,
a fresh cluster in a temporary folder, stopped and removed afterwards.

initdb refuses to run as root, so as root the cluster belongs to the `postgres` user (which
Debian's package creates). Missing binaries or driver skip the test, unless
NN_REQUIRE_POSTGRES=1 (.ci/run installs the server) makes that a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _missing(reason: str):
    if os.environ.get("NN_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"NN_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """postgresql+psycopg://nn@127.0.0.1:PORT/postgres of a server started for this module."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not (initdb and pg_ctl):
        _missing("PostgreSQL's initdb/pg_ctl are not installed (Debian package postgresql)")
    try:
        import psycopg  # noqa: F401  (SQLAlchemy's driver for postgresql+psycopg://)
    except ImportError:
        _missing("psycopg is not installed (pip install 'nn-scratch[tune]')")
    as_user: list[str] = []
    folder = tempfile.mkdtemp(prefix="nn-pg-")
    if os.geteuid() == 0:  # initdb will not run as root: the cluster is postgres's
        runuser = shutil.which("runuser")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            _missing("running as root without a postgres user to own the cluster")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data, port = os.path.join(folder, "data"), _free_port()

    def run(*args):
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)

    made = run(initdb, "-D", data, "-U", "nn", "--auth=trust", "-E", "UTF8", "--no-sync")
    if made.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"initdb failed: {made.stderr.strip()[-500:]}")
    # Loopback only, and the socket in the cluster's own folder.
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off"
    started = run(pg_ctl, "-D", data, "-o", options, "-l", os.path.join(folder, "log"), "-w", "start")
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {started.stderr.strip()[-500:]}")
    try:
        yield f"postgresql+psycopg://nn@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
