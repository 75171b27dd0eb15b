"""Fixtures: one moto S3 server per session, a fresh bucket per test, a clean AWS environment."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from testsupport.s3_server import MotoServer  # noqa: E402

#: What the tests' clients sign with; the default moto server accepts any credentials.
TEST_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="session", autouse=True)
def _isolated_aws_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No developer profile, endpoint or proxy may leak into the tests (or a real account)."""
    nowhere = tmp_path_factory.mktemp("aws") / "absent"
    with pytest.MonkeyPatch.context() as patch:
        for name in (
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_S3_BUCKET",
            "AWS_REGION",
            "AWS_SESSION_TOKEN",
            "AWS_MAX_ATTEMPTS",
            "AWS_RETRY_MODE",
        ):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_CONFIG_FILE", str(nowhere))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield


@pytest.fixture(scope="session")
def s3_server(_isolated_aws_environment: None) -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_endpoint(s3_server: MotoServer) -> str:
    return s3_server.endpoint_url


@pytest.fixture(scope="session")
def raw_s3(s3_endpoint: str) -> Iterator[Any]:
    """A plain boto3 client on the server, for arranging and inspecting behind the backend."""
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    yield client
    client.close()


@pytest.fixture
def bucket_name() -> str:
    return f"st-s3-test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def bucket(raw_s3: Any, bucket_name: str) -> str:
    """A fresh, empty bucket that exists."""
    raw_s3.create_bucket(Bucket=bucket_name)
    return bucket_name


@pytest.fixture
def s3_options(s3_endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": s3_endpoint, "region": "us-east-1", **TEST_CREDENTIALS}


@pytest.fixture(scope="session")
def auth_s3(_isolated_aws_environment: None) -> Iterator[dict[str, str]]:
    """A second server that checks credentials, with one IAM user that has no permissions.

    moto accepts any credentials until ``INITIAL_NO_AUTH_ACTION_COUNT`` requests have been
    served; the three free ones create the user, its access key and a bucket, and everything
    after that is authenticated and authorised like AWS (InvalidAccessKeyId,
    SignatureDoesNotMatch, AccessDenied).
    """
    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as server:
        setup: dict[str, Any] = {
            "endpoint_url": server.endpoint_url,
            "region_name": "us-east-1",
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
        }
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="powerless")
        key = iam.create_access_key(UserName="powerless")["AccessKey"]
        s3 = boto3.client("s3", **setup)
        s3.create_bucket(Bucket="guarded")
        iam.close()
        s3.close()
        yield {
            "endpoint_url": server.endpoint_url,
            "bucket": "guarded",
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
        }
