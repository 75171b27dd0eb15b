"""Encrypted repositories on the S3 emulator: the bucket holds only ciphertext.

* ``stcore init --encrypt`` straight on S3, a backup, then every object downloaded with boto3 and
  searched for markers, unkeyed content hashes and file names; restore and
  ``check --read-data`` work there;
* a local encrypted repository synced to S3: the keys go up with it, the bucket holds only
  ciphertext, and the remote opens with the same password (and not with another).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import blake3
import boto3
import pytest

import stcore
from stcore.errors import PasswordError
from stcore.repo.keys import KdfParams
from stcore.repo.store import open_backend
from testsupport.s3_server import MotoServer

CHEAP = KdfParams(memory_kib=1024, iterations=1, lanes=1)
PASSWORD = "cloud password 4d1e"
MARKERS = [b"CLOUD-MARKER-ONE-8c2f1a", b"CLOUD-MARKER-TWO-e97b30", b"CLOUD-MARKER-KEY-51aa"]
DISTINCTIVE_DIR = "cloud-src-dir-r7k2pw"
DISTINCTIVE_FILE = "cloud-notes-name-h3v9qz.txt"


@pytest.fixture
def s3_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL": moto.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stcore.cli", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def make_tree(root: Path) -> Path:
    source = root / DISTINCTIVE_DIR
    (source / "sub").mkdir(parents=True)
    (source / DISTINCTIVE_FILE).write_bytes(b"notes: " + MARKERS[0] + b"\n")
    (source / "sub" / "mixed.bin").write_bytes(os.urandom(40_000) + MARKERS[1] + os.urandom(40_000))
    (source / "marker-only.bin").write_bytes(MARKERS[1] * (150_000 // len(MARKERS[1])))
    (source / "doc.json").write_text(json.dumps({MARKERS[2].decode(): MARKERS[0].decode()}))
    return source


def needles(source: Path) -> dict[str, bytes]:
    found = {f"marker {m.decode()}": m for m in MARKERS}
    for path in source.rglob("*"):
        if path.is_file():
            digest = blake3.blake3(path.read_bytes()).digest()
            found[f"BLAKE3 of {path.name}"] = digest
            found[f"BLAKE3 hex of {path.name}"] = digest.hex().encode()
    for marker in MARKERS:
        found[f"BLAKE3 of {marker.decode()}"] = blake3.blake3(marker).digest()
        found[f"BLAKE3 hex of {marker.decode()}"] = blake3.blake3(marker).hexdigest().encode()
    for name in (DISTINCTIVE_DIR, DISTINCTIVE_FILE, "marker-only.bin"):
        found[f"name {name}"] = name.encode()
    found["password"] = PASSWORD.encode()
    return found


def bucket_objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, downloaded with boto3 (not through stcore)."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    objects = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            objects[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return objects


def assert_only_ciphertext(objects: dict[str, bytes], source: Path) -> None:
    kinds = {key.split("/")[1] for key in objects}
    assert {"config", "keys", "data", "index", "snapshots"} <= kinds, sorted(objects)
    leaked = [
        f"{label} in {key}"
        for key, body in objects.items()
        for label, needle in needles(source).items()
        if needle in body
    ]
    assert leaked == []


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_cli_encrypted_repository_on_s3_holds_only_ciphertext(
    moto: MotoServer, s3_env: dict[str, str], tmp_path: Path
) -> None:
    bucket = f"stcore-enc-{uuid.uuid4().hex[:12]}"
    url = f"s3://{bucket}/repo"
    env = {**s3_env, "STCORE_PASSWORD": PASSWORD}
    init = cli("init", "--encrypt", "--create-bucket", "--repo", url, "--json", env=env)
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["encryption"] == "aes-256-gcm"
    source = make_tree(tmp_path)
    backup = cli("--repo", url, "backup", "--json", str(source), env=env)
    assert backup.returncode == 0, backup.stderr
    snapshot_id = json.loads(backup.stdout)["id"]

    objects = bucket_objects(moto.endpoint_url, bucket)
    assert_only_ciphertext(objects, source)
    assert json.loads(objects["repo/config"])["encryption"] == "aes-256-gcm"

    restore = cli("--repo", url, "restore", snapshot_id, "--target", str(tmp_path / "out"), env=env)
    assert restore.returncode == 0, restore.stderr
    assert tree_bytes(tmp_path / "out" / DISTINCTIVE_DIR) == tree_bytes(source)
    check = cli("--repo", url, "check", "--read-data", env=env)
    assert check.returncode == 0, check.stderr
    assert "no errors found" in check.stdout

    wrong = cli("--repo", url, "snapshots", env={**s3_env, "STCORE_PASSWORD": "wrong"})
    assert wrong.returncode == 1
    assert "wrong password" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    assert bucket_objects(moto.endpoint_url, bucket) == objects  # nothing written by any of it


def test_a_synced_encrypted_repository_opens_on_s3_with_the_same_password(
    moto: MotoServer, s3_env: dict[str, str], tmp_path: Path
) -> None:
    local = stcore.init_repository(
        str(tmp_path / "local"), encryption="aes-256-gcm", password=PASSWORD, kdf=CHEAP
    )
    source = make_tree(tmp_path)
    snapshot_id = local.backup(stcore.sources_for_paths([str(source)])).manifest.id
    local.add_key("second password", CHEAP)
    bucket = f"stcore-enc-sync-{uuid.uuid4().hex[:12]}"
    url = f"s3://{bucket}/mirror"
    open_backend(url, stcore.make_plugin_manager(), create=True).close()
    result = local.sync(url)
    assert result.snapshots == (snapshot_id,)

    objects = bucket_objects(moto.endpoint_url, bucket)
    assert_only_ciphertext(objects, source)
    local_objects = {
        str(p.relative_to(tmp_path / "local")): p.read_bytes()
        for p in (tmp_path / "local").rglob("*")
        if p.is_file()
    }
    assert {f"mirror/{k}": v for k, v in local_objects.items()} == objects  # a byte-exact copy

    with pytest.raises(PasswordError, match="wrong password"):
        stcore.open_repository(url, password="not the password")
    for password in (PASSWORD, "second password"):
        with stcore.open_repository(url, password=password) as remote:
            assert remote.id == local.id and remote.encrypted
            target = tmp_path / f"out-{len(password)}"
            remote.restore(snapshot_id, target)
            assert tree_bytes(target / DISTINCTIVE_DIR) == tree_bytes(source)
            check = remote.check(read_data=True)
            assert check.ok, check.errors
    local.close()
