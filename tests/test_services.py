"""The test services `.ci/services.sh` starts are real and reachable (CI fails here, not by skipping)."""

from __future__ import annotations

import boto3


def test_postgres_is_real(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SHOW server_version").fetchone()[0].split(".")[0].isdigit()
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
        assert conn.execute("SELECT sum(x) FROM t").fetchone()[0] == 3


def test_s3_round_trip(s3_bucket, s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="a/b.bin", Body=b"hello")
    got = s3.get_object(Bucket=s3_bucket, Key="a/b.bin", Range="bytes=1-3")["Body"].read()
    assert got == b"ell"
