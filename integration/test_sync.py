"""Sync to the cloud emulators over real HTTP: incremental, through failures, killed and resumed.

* every cloud: a full sync, a no-op sync, then an incremental one that uploads only what is new;
* S3 behind :class:`~testsupport.fault_proxy.FaultProxy`: dropped connections, lost answers,
  500/503 and stalls are retried until the sync completes, and the result passes
  ``check --read-data``;
* ``stcore sync`` killed with SIGKILL after k uploads for several k, then re-run: it completes,
  uploads nothing twice, and the remote is a consistent repository at every point;
* permanent errors (bad keys, missing bucket, access denied mid-sync) stop it at once, in one
  line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import stcore
from integration.conftest import Remote
from stcore.config import RemoteConfig
from stcore.repo.format import object_key
from stcore.repo.store import open_backend
from stcore.repository import Repository
from stcore.sync import Syncer, SyncOptions
from testsupport.fault_proxy import FAULTS, FaultProxy, ProxyRequest
from testsupport.s3_server import MotoServer

PACK_SIZE = 1 << 20
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


# --- helpers -------------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stcore.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


def backup(repo: Repository, root: Path, name: str, size: int) -> str:
    """Add one random file of ``size`` bytes under ``root`` and back the whole tree up.

    The bytes are random but seeded by name and size, so the chunks are always the same: tests
    that need several packs get them whatever order the sealing threads finish in (3.5 MB of
    "a.bin" is four chunks of 0.5-1.2 MB, at least three packs of 1 MiB).
    """
    root.mkdir(exist_ok=True)
    (root / name).write_bytes(random.Random(f"{name}:{size}").randbytes(size))
    return repo.backup(stcore.sources_for_paths([str(root)])).manifest.id


def keys(repo_or_backend: Repository | object, prefix: str = "") -> set[str]:
    backend = getattr(repo_or_backend, "backend", repo_or_backend)
    return {info.key for info in backend.list(prefix)}  # type: ignore[attr-defined]


def new_bucket() -> str:
    return f"stcore-sync-{uuid.uuid4().hex[:12]}"


def create_bucket(url: str, options: dict[str, str] | None = None) -> None:
    """A remote needs its bucket; the repository in it is created by the first sync."""
    open_backend(url, stcore.make_plugin_manager(), create=True, options=options).close()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return dict(S3_CREDENTIALS)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Repository]:
    repo = stcore.init_repository(str(tmp_path / "local"), pack_size=PACK_SIZE)
    yield repo
    repo.close()


def needed_indexes(repo: Repository, snapshot_id: str) -> set[str]:
    """The local index objects that describe some blob of the snapshot (its trees included)."""
    blobs: set[bytes] = set()
    for summary in repo.load_manifest(snapshot_id).sources.values():
        blobs.add(summary.root)
        for _, node in repo.walk(summary.root):
            blobs.update(node.content)
            if node.subtree is not None:
                blobs.add(node.subtree)
    found = set()
    for key in keys(repo, "index/"):
        if any(e.blob_id in blobs for e in repo.store.read_index_entries(key)):
            found.add(key)
    return found


def packs_of(repo: Repository, index: str) -> set[str]:
    return {object_key("data", e.pack_id.hex()) for e in repo.store.read_index_entries(index)}


# --- 1. every cloud: full, nothing, then only what is new ---------------------------------------


def test_sync_to_each_cloud_uploads_only_what_the_remote_lacks(
    remote: Remote, local: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = remote
    create_bucket(url)
    attempted: list[str] = []
    original = Syncer._copy

    def spy(self: Syncer, backend: object, key: str) -> None:
        attempted.append(key)
        original(self, backend, key)  # type: ignore[arg-type]

    monkeypatch.setattr(Syncer, "_copy", spy)
    mirror = RemoteConfig(name="cloud", url=url)
    first = backup(local, tmp_path / "data", "a.bin", 3_500_000)
    before = keys(local) - {"config"}
    assert len(keys(local, "data/")) >= 2

    full = local.sync(mirror)
    assert full.snapshots == (first,)
    assert full.objects_uploaded == len(before) and sorted(attempted) == sorted(before)
    assert full.bytes_uploaded > 3_500_000

    attempted.clear()
    again = local.sync(mirror)
    assert (again.objects_uploaded, again.bytes_uploaded, again.snapshots) == (0, 0, ())
    assert again.snapshots_skipped == 1 and attempted == []

    second = backup(local, tmp_path / "data", "b.bin", 1_200_000)
    new = keys(local) - before - {"config"}
    new_packs = {k for k in new if k.startswith("data/")}
    assert new_packs and len(new) == len(new_packs) + 2  # + 1 index + 1 manifest
    incremental = local.sync(mirror)
    assert incremental.snapshots == (second,) and incremental.snapshots_skipped == 1
    assert incremental.objects_uploaded == len(new_packs) + 2
    assert sorted(attempted) == sorted(new)  # no old pack was even tried
    assert not set(attempted) & before

    mirrored = stcore.open_repository(url, cache_root=tmp_path / "mirror-cache")
    try:
        assert keys(mirrored) == keys(local)
        assert sorted(m.id for m in mirrored.snapshots()) == sorted([first, second])
        result = mirrored.check(read_data=True)
        assert result.ok, result.errors
    finally:
        mirrored.close()


def test_each_cloud_holds_the_compacted_index_after_syncs_along_backups(
    remote: Remote, local: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync after every backup, past the compaction threshold: the remote ends with the same
    few index objects as the local repository, and a cold open reads only those."""
    from stcore.repo.compact import COMPACT_AT

    url, _ = remote
    create_bucket(url)
    mirror = RemoteConfig(name="cloud", url=url)
    ids = []
    for n in range(COMPACT_AT + 2):
        ids.append(backup(local, tmp_path / "data", f"f{n}.bin", 20_000))
        local.sync(mirror)
    assert len(keys(local, "index/")) <= 3
    mirrored = stcore.open_repository(url, cache_root=tmp_path / "mirror-cache")
    try:
        assert keys(mirrored, "index/") == keys(local, "index/")
        read: list[str] = []
        original = mirrored.backend.read

        def counted(key: str, offset: int = 0, length: int | None = None) -> bytes:
            read.append(key)
            return original(key, offset, length)

        monkeypatch.setattr(mirrored.backend, "read", counted)
        assert sorted(m.id for m in mirrored.snapshots()) == sorted(ids)
        result = mirrored.check(read_data=True)
        assert result.ok, result.errors
        assert len({k for k in read if k.startswith("index/")}) <= 3
    finally:
        mirrored.close()


# --- 2. through a proxy that fails requests -------------------------------------------------------


def test_sync_through_failing_network_completes_and_checks_clean(
    moto: MotoServer, s3_env: dict[str, str], local: Repository, tmp_path: Path
) -> None:
    url = f"s3://{new_bucket()}/repo"
    create_bucket(url, {"endpoint_url": moto.endpoint_url})
    for i in range(4):
        backup(local, tmp_path / "data", f"{i}.bin", 700_000)
    # Each kind of fault at least once, at the worst moment: the first PUTs of packs, and the
    # answer to the repository config's PUT lost (the retry then finds it there).
    forced = {
        "data": ["drop", "lost", "500", "503", "stall"],
        "config": ["lost"],
        "snapshots": ["lost"],
    }

    def decide(request: ProxyRequest) -> str | None:
        if request.method == "PUT":
            kind = request.path.split("/")[3] if request.path.count("/") >= 3 else ""
            if forced.get(kind):
                return forced[kind].pop(0)
        return None  # the seeded rate decides

    with FaultProxy(
        moto.endpoint_url, seed=1234, rate=0.25, faults=FAULTS, decide=decide, stall_seconds=2.0
    ) as proxy:
        mirror = RemoteConfig(
            name="flaky",
            url=url,
            options={
                "endpoint_url": proxy.endpoint_url,
                "max_attempts": 2,
                "connect_timeout": 2,
                "read_timeout": 0.5,
            },
        )
        started = time.monotonic()
        result = local.sync(mirror, options=SyncOptions(attempts=15, max_backoff=0.2))
        elapsed = time.monotonic() - started
        assert set(proxy.injected) >= set(FAULTS), proxy.injected
        assert not any(forced.values())
        assert len(result.snapshots) == 4 and elapsed < 30
        # Nothing was lost or doubled on the way: the remote holds exactly the local objects.
        direct = open_backend(
            url, stcore.make_plugin_manager(), options={"endpoint_url": moto.endpoint_url}
        )
        try:
            assert keys(direct) == keys(local)
        finally:
            direct.close()

        # The proxy itself is faithful: streamed whole reads and Range reads come back intact.
        proxy.rate, proxy.decide = 0.0, None
        through = open_backend(url, stcore.make_plugin_manager(), options=mirror.options)
        try:
            pack = sorted(keys(local, "data/"))[0]
            whole = local.backend.read(pack)
            assert through.read(pack) == whole
            assert through.read(pack, 1000, 5000) == whole[1000:6000]
            assert through.read(pack, len(whole) - 10) == whole[-10:]
        finally:
            through.close()

    env = {**s3_env, "AWS_ENDPOINT_URL": moto.endpoint_url}  # straight to moto, no proxy
    check = cli("check", "--repo", url, "--read-data", "--json", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report["ok"] and report["snapshots"] == 4 and report["read_data"]


# --- 3. killed with SIGKILL after k uploads, then resumed ----------------------------------------


class PutGate:
    """The proxy's ``decide``: PUTs go through until ``limit`` have, then the rest are held."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self.passed = 0

    def __call__(self, request: ProxyRequest) -> str | None:
        if request.method != "PUT":
            return None
        if self.limit is not None and self.passed >= self.limit:
            return "hold"
        self.passed += 1
        return None


def test_sync_killed_at_several_points_resumes_consistently(
    moto: MotoServer, s3_env: dict[str, str], local: Repository, tmp_path: Path
) -> None:
    bucket = new_bucket()
    url = f"s3://{bucket}/repo"
    create_bucket(url, {"endpoint_url": moto.endpoint_url})
    snapshots = [
        backup(local, tmp_path / "data", f"{i}.bin", size)
        for i, size in enumerate((2_600_000, 2_600_000, 1_000_000))
    ]
    # Sealing threads append batches in the order they finish, so the packs vary; with these
    # seeded files every order gives at least 2 + 2 + 1 packs (a 1.6 MB second file could
    # share one pack with its trees).
    local_keys = keys(local)
    packs = {k for k in local_keys if k.startswith("data/")}
    indexes = {k for k in local_keys if k.startswith("index/")}
    total = len(local_keys)  # config + packs + indexes + manifests: one PUT each
    assert len(packs) >= 5 and len(indexes) == 3
    needs = {object_key("snapshots", s): needed_indexes(local, s) for s in snapshots} | {
        i: packs_of(local, i) for i in indexes
    }
    local.close()

    (tmp_path / "stcore.toml").write_text(
        '[repository]\nurl = "local"\n\n'
        f'[remotes.cloud]\nurl = "{url}"\n\n'
        "[remotes.cloud.options]\nmax_attempts = 1\nconnect_timeout = 5\nread_timeout = 20\n"
    )
    # Kill: after the config, halfway through the packs, after all packs, after all indexes,
    # and between two manifests.
    p, i = len(packs), len(indexes)
    kill_points = [1, 1 + p // 2, 1 + p, 1 + p + i, 1 + p + i + 1]
    gate = PutGate()
    remote_counts: list[int] = []

    def remote_state(tag: str) -> set[str]:
        """What is on the remote, straight from moto; it must be a consistent repository."""
        mirrored = stcore.open_repository(
            url, cache_root=tmp_path / f"mirror-{tag}", options={"endpoint_url": moto.endpoint_url}
        )
        try:
            result = mirrored.check()
            assert result.ok, (tag, result.errors)
            state = keys(mirrored)
        finally:
            mirrored.close()
        for snapshot in (k for k in state if k.startswith("snapshots/")):
            assert needs[snapshot] <= state, (tag, snapshot)
            assert set().union(*(needs[x] for x in needs[snapshot])) <= state
        return state

    with FaultProxy(moto.endpoint_url, decide=gate, hold_timeout=20) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.endpoint_url}
        for k in kill_points:
            gate.limit = k
            proxy.hold_again()
            log = tmp_path / f"sync-{k}.log"
            with open(log, "wb") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "stcore.cli", "sync", "--remote", "cloud"],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env},
                )
            try:
                deadline = time.monotonic() + 30
                while not (proxy.held and proxy.count("sent", "PUT") >= k):
                    assert process.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, f"no PUT held at k={k}"
                    time.sleep(0.01)
                process.send_signal(signal.SIGKILL)
            finally:
                process.kill()
                process.wait(timeout=10)
            assert process.returncode == -signal.SIGKILL
            proxy.release_held()  # the frozen requests die with the client, never forwarded
            proxy.wait_idle()
            state = remote_state(f"k{k}")
            assert len(state) == k, (k, sorted(state))
            remote_counts.append(len(state))

        gate.limit = None
        resumed = cli("sync", "--remote", "cloud", "--json", env=env)
        assert resumed.returncode == 0, resumed.stderr
        (summary,) = json.loads(resumed.stdout)
        # Only what was missing went up, and each object exactly once over all runs.
        assert summary["objects_uploaded"] == total - remote_counts[-1]
        assert sorted(summary["snapshots"]) == sorted(
            s for s in snapshots if object_key("snapshots", s) not in state
        )
        prefix = f"/{bucket}/repo/"
        puts = {path: n for (method, path), n in proxy.forwarded.items() if method == "PUT"}
        assert {path.removeprefix(prefix) for path in puts} == local_keys
        assert set(puts.values()) == {1}, {k: n for k, n in puts.items() if n != 1}
        # Consistent at every instant, not only at the kill points: when a PUT of an index or a
        # manifest reached the server, everything it refers to had already been stored.
        stored: set[str] = set()
        for event in proxy.events:
            key = event.path.removeprefix(prefix)
            if event.method != "PUT":
                continue
            if event.what == "forwarded" and key in needs:
                missing = needs[key] - stored
                assert not missing, f"{key} sent before {sorted(missing)[:3]}"
            elif event.what == "answered" and event.status == 200:
                stored.add(key)

    final = remote_state("final")
    assert final == local_keys
    check = cli(
        "check", "--repo", url, "--read-data", env={**s3_env, "AWS_ENDPOINT_URL": moto.endpoint_url}
    )
    assert check.returncode == 0, check.stdout + check.stderr


# --- 4. permanent errors: at once, one line -------------------------------------------------------


@pytest.fixture(scope="module")
def authenticating_moto() -> Iterator[MotoServer]:
    """moto checking credentials from the first request on."""
    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as server:
        yield server


@pytest.mark.parametrize("case", ["bad-keys", "missing-bucket", "denied-mid-sync"])
def test_permanent_errors_stop_the_sync_at_once_in_one_line(
    case: str,
    request: pytest.FixtureRequest,
    s3_env: dict[str, str],
    local: Repository,
    tmp_path: Path,
) -> None:
    for i in range(3):
        backup(local, tmp_path / "data", f"{i}.bin", 600_000)
    local.close()
    url = f"s3://{new_bucket()}/repo"
    proxy: FaultProxy | None = None
    if case == "bad-keys":
        endpoint = request.getfixturevalue("authenticating_moto").endpoint_url
        env = {
            **s3_env,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "AKIANOTAREALKEY00000",
            "AWS_SECRET_ACCESS_KEY": "not-the-secret-at-all",
        }
        needles: tuple[str, ...] = ("rejected the credentials",)
    else:
        endpoint = request.getfixturevalue("moto").endpoint_url
        env = {**s3_env, "AWS_ENDPOINT_URL": endpoint}
        needles = ("does not exist", "--create-bucket")
        if case == "denied-mid-sync":
            create_bucket(url, {"endpoint_url": endpoint})
            proxy = FaultProxy(
                endpoint,
                decide=lambda r: "403" if r.method == "PUT" and "/data/" in r.path else None,
            )
            env["AWS_ENDPOINT_URL"] = proxy.start()
            needles = ("access denied to data/",)
    # Default retry settings: a permanent error must not be retried, whatever they are.
    (tmp_path / "stcore.toml").write_text(
        f'[repository]\nurl = "local"\n\n[remotes.cloud]\nurl = "{url}"\n'
    )
    try:
        started = time.monotonic()
        result = cli("sync", "--remote", "cloud", env=env, timeout=30)
        elapsed = time.monotonic() - started
    finally:
        if proxy is not None:
            proxy.stop()
    line = assert_one_line_error(result, *needles)
    assert "not-the-secret-at-all" not in result.stderr
    assert elapsed < 10, (elapsed, line)
    if proxy is not None:
        assert 1 <= proxy.injected["403"] <= 4  # at most the uploads already under way
        assert proxy.count("forwarded", "PUT", f"/{url[5:]}/snapshots/") == 0
