"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` + ``pg_ctl`` on a
temporary folder and a free port on 127.0.0.1, stopped and deleted afterwards.

The binaries come from Debian's ``postgresql`` package (``make test`` installs it when it
can); :func:`find_binaries` says why they are unavailable otherwise. As root, the server runs
as the ``postgres`` user the package creates (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

SUPERUSER = "scalinglab"


def find_binaries() -> tuple[Path | None, str]:
    """The folder holding ``initdb`` and ``pg_ctl``, or ``None`` and the reason."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            if os.geteuid() == 0 and not _has_user("postgres"):
                return None, "running as root and there is no 'postgres' user to run the server"
            return folder, ""
    return None, "PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql"


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One server; :meth:`new_store_url` gives each test its own empty schema.

    Parameters
    ----------
    binaries
        Folder of ``initdb`` and ``pg_ctl``.
    fsync
        Keep PostgreSQL's durable commits (the default, as a real server runs); off makes
        the server faster but not crash-safe.
    """

    def __init__(self, binaries: Path, *, fsync: bool = True) -> None:
        self.binaries = binaries
        self.base = Path(tempfile.mkdtemp(prefix="scalinglab-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            f"-c max_connections=200 -c fsync={'on' if fsync else 'off'}"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-o", options,
                  "-w", "start")  # fmt: skip

    def _run(self, program: str, *args: str) -> None:
        command = [*self._as, str(self.binaries / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = self.base / "log"
            extra = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed: {done.stderr or done.stdout}\n{extra}")

    def url(self, database: str = "postgres") -> str:
        """The URL of one database of this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_store_url(self) -> str:
        """A URL whose tables land in a new, empty schema (much faster than a database).

        The schema is chosen as a user would share one database between stores: with
        libpq's ``options=-csearch_path=NAME`` in the URL.
        """
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f"CREATE SCHEMA {name}")
        return f"{self.url()}?options=-csearch_path%3D{name}"

    def stop(self) -> None:
        """Stop the server and delete its files."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
