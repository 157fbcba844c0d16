"""Shared fixtures: a real hogx server in a child process, reached over real HTTP."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
POSTGRES_USERS = ("postgres", "root")  # trust auth on this machine and in CI


def postgres_server() -> str | None:
    """A URL of the local PostgreSQL server's maintenance database, or None if unreachable."""
    from sqlalchemy import create_engine, text

    for user in POSTGRES_USERS:
        url = f"postgresql+psycopg://{user}@127.0.0.1:5432/postgres"
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return url
        except Exception:
            continue
        finally:
            engine.dispose()
    return None


NATS_URL = os.environ.get("HOGX_TEST_NATS_URL", "nats://127.0.0.1:4222")


def nats_reachable(url: str = NATS_URL) -> bool:
    """True when a NATS server with JetStream answers at `url`."""
    import asyncio

    import nats

    async def probe() -> bool:
        try:
            client = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        except Exception:
            return False
        try:
            await client.jetstream().account_info()
            return True
        except Exception:
            return False
        finally:
            await client.close()

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The NATS server (with JetStream) the cluster tests run against.

    Under CI=true its absence fails the run; elsewhere those tests skip with the reason."""
    if not nats_reachable():
        reason = f"no NATS server with JetStream at {NATS_URL}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}, and CI=true requires the cluster tests to run")
        pytest.skip(reason)
    return NATS_URL


def ocop_attributes(**overrides: Any) -> dict[str, Any]:
    """Attributes an OCOP listing needs, with a certificate issued 100 days ago."""
    from datetime import date, timedelta

    attributes: dict[str, Any] = {
        "stars": 4,
        "product_group": "food",
        "producer": "HTX Ong mật U Minh",
        "producer_type": "cooperative",
        "province": "Cà Mau",
        "certificate_number": "OCOP-CM-2025-0042",
        "certification_date": (date.today() - timedelta(days=100)).isoformat(),
    }
    return {**attributes, **overrides}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running `hogx serve` and how to reach it."""

    url: str
    operator_key: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path  # what it printed, stdout and stderr

    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def stop(self) -> bool:
        """SIGTERM, as an orchestrator would; True when the server shut down cleanly.

        Uvicorn re-raises the signal once its graceful shutdown is done, so a clean stop ends
        with -SIGTERM (or 0), never with another code; and nothing is left for Python's
        resource tracker to clean up after it (the warning it prints names what leaked).
        """
        self.process.send_signal(signal.SIGTERM)
        ended_cleanly = self.process.wait(timeout=30) in (0, -signal.SIGTERM)
        return ended_cleanly and "resource_tracker" not in self.log.read_text(errors="replace")


def start_server(data_dir: Path, *extra: str, operator_key: str | None = None) -> Server:
    port = free_port()
    operator_key = operator_key or secrets.token_urlsafe(32)
    log_path = data_dir.parent / f"server-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "exchange.cli", "serve", "--port", str(port),
         "--data-dir", str(data_dir), *extra],
        cwd=REPO,
        env={**os.environ, "HOGX_OPERATOR_KEY": operator_key},
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hogx serve exited with {process.returncode}: see {log.name}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, operator_key, data_dir, process, log_path)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("hogx serve did not become healthy within 30 s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path / "data")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
