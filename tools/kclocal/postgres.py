"""A real PostgreSQL server on 127.0.0.1 for the local stack and the tests: the marketplace's database.

The server binaries come from the machine's own PostgreSQL (initdb and pg_ctl on PATH, or Debian's
/usr/lib/postgresql/N/bin) where installed, otherwise from the `pgserver` wheel (a dev dependency that carries
PostgreSQL's binaries), so a fresh machine needs no extra step. PostgreSQL refuses to run as root: as root, the
cluster belongs to, and the server runs as, an unprivileged system user (`postgres` if it exists, else one made
for it). Clients log in with a password over TCP (scram-sha-256), as they do to RDS.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "kcprice"
DATABASE = "marketplace"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


def binaries() -> Path:
    """The folder holding initdb, pg_ctl and postgres."""
    candidates = []
    if found := shutil.which("pg_ctl"):
        candidates.append(Path(os.path.realpath(found)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    # Found, not imported: importing pgserver sets up things this module does not use.
    if (spec := importlib.util.find_spec("pgserver")) and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    for folder in candidates:
        if all((folder / b).exists() for b in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise PostgresUnavailable(
        "no PostgreSQL binaries: install PostgreSQL (apt-get install postgresql) or `pip install pgserver`"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _system_user() -> pwd.struct_passwd | None:
    """The user the server runs as when we are root (None: not root, run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "kcprice-pg"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "kcprice-pg"], check=True, capture_output=True)
    return pwd.getpwnam("kcprice-pg")


@dataclass
class Postgres:
    """One cluster in `folder` (kept across restarts: the marketplace's data survives like the rest of the stack)."""

    folder: Path
    port: int = 0
    password: str = ""

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.bin = binaries()
        self.user = _system_user()
        self.port = self.port or _free_port()

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        kw: dict = {}
        if self.user is not None:
            uid, gid = self.user.pw_uid, self.user.pw_gid

            def drop() -> None:
                os.setgid(gid)
                os.setuid(uid)

            kw["preexec_fn"] = drop
        # The server inherits no locale surprises and no stdout: its log goes to a file.
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(self.folder)}
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False, **kw)

    def start(self) -> Postgres:
        self.folder.mkdir(parents=True, exist_ok=True)
        secret_file = self.folder / "password"
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.data, ignore_errors=True)
            self.password = secrets.token_urlsafe(18)
            secret_file.write_text(self.password)
            with tempfile.NamedTemporaryFile("w", dir=self.folder, delete=False) as pw:
                pw.write(self.password)
            self._own()
            done = self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                USER,
                "--pwfile",
                pw.name,
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E",
                "UTF8",
            )
            os.unlink(pw.name)
            if done.returncode:
                raise PostgresUnavailable(f"initdb failed: {done.stderr.strip()[-800:]}")
        self.password = secret_file.read_text()
        self._own()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        done = self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options, "-w",
            "start",
        )  # fmt: skip
        if done.returncode:
            log = (self.folder / "server.log").read_text()[-800:] if (self.folder / "server.log").exists() else ""
            raise PostgresUnavailable(f"PostgreSQL did not start: {done.stderr.strip()[-400:]} {log}")
        self._create_database()
        return self

    def _own(self) -> None:
        """As root: the cluster's folder belongs to the server's user, who must also be able to reach it (search
        permission on the folders above, e.g. pytest's root-only temp folder)."""
        if self.user is None:
            return
        for p in [self.folder, *self.folder.rglob("*")]:
            os.chown(p, self.user.pw_uid, self.user.pw_gid)
        for parent in self.folder.parents:
            mode = os.stat(parent).st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)

    def _create_database(self) -> None:
        conn = self.connect("postgres")
        try:
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if not cur.fetchall():
                cur.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            conn.close()

    def connect(self, database: str = DATABASE):
        import pg8000.dbapi

        return pg8000.dbapi.connect(
            user=USER, password=self.password, host="127.0.0.1", port=self.port, database=database, timeout=30
        )

    def secret(self) -> dict:
        """The connection as an RDS-managed secret holds it (Secrets Manager's JSON for a PostgreSQL database)."""
        return {
            "engine": "postgres",
            "host": "127.0.0.1",
            "port": self.port,
            "username": USER,
            "password": self.password,
            "dbname": DATABASE,
        }

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
