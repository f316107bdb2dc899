"""Shared fixtures. Area-specific factories live in tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARCHIVE = SHARED / "checkpoints" / "klp-archive"
SIGNGLOVE = SHARED / "data" / "signglove"
SPEC = SHARED / "spec" / "families.md"


@pytest.fixture(scope="session")
def archive_dir() -> Path:
    """The real messy archive; tests using it skip cleanly where ../shared is absent."""
    if not ARCHIVE.is_dir():
        pytest.skip("../shared/checkpoints/klp-archive not present")
    return ARCHIVE


@pytest.fixture(scope="session")
def signglove_dir() -> Path:
    if not SIGNGLOVE.is_dir():
        pytest.skip("../shared/data/signglove not present")
    return SIGNGLOVE


@pytest.fixture(scope="session")
def torch_mod():
    """torch, or a clean skip where the [train] extra is not installed."""
    return pytest.importorskip("torch")


# ---------------------------------------------------------------------------- test services
# PostgreSQL and an S3 server (moto) started by `.ci/services.sh` (CI always starts them).
# Without them the backend tests skip with the reason; where CKREG_REQUIRE_SERVICES=1
# (.ci/run) a missing service fails instead, so CI never passes by skipping.
import os
import uuid


def _service(var: str, what: str) -> str:
    value = os.environ.get(var)
    if not value:
        msg = f"{what} not available: set {var} (eval \"$(.ci/services.sh start)\")"
        if os.environ.get("CKREG_REQUIRE_SERVICES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return value


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL of the test PostgreSQL server's maintenance database."""
    return _service("CKREG_TEST_PG_URL", "PostgreSQL")


@pytest.fixture
def pg_url(pg_server_url):
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    psycopg = pytest.importorskip("psycopg")
    name = f"ckreg_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = pg_server_url.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """Endpoint URL of the test S3 server (credentials come from the environment)."""
    return _service("CKREG_TEST_S3_ENDPOINT", "An S3 server")


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch):
    """A fresh bucket on the test S3 server; AWS_ENDPOINT_URL points ckreg at it. Returns its name."""
    boto3 = pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", os.environ.get("AWS_ACCESS_KEY_ID", "testing"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    name = f"ckreg-t-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Audits and remote blob copies cache under a session temp dir, never the user's cache."""
    os.environ["CKREG_CACHE_DIR"] = str(tmp_path_factory.mktemp("ckreg-cache"))
    yield
