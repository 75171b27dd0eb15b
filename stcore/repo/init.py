"""Init: create a new, empty repository (``stcore init``).

Nothing else creates a repository: opening one that does not exist is an error everywhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from stcore.errors import (
    ConfigError,
    ObjectExistsError,
    ObjectNotFoundError,
    RepositoryExistsError,
)
from stcore.plugins import PluginHost
from stcore.repo.chunker import ChunkerParams
from stcore.repo.format import DEFAULT_PACK_SIZE, RepositoryConfig
from stcore.repo.keys import (
    KdfParams,
    MasterKey,
    PasswordSource,
    add_key,
    require_usable_password,
    resolve_password,
)
from stcore.repo.store import (
    Store,
    cache_dir_for,
    is_remote_url,
    open_backend,
    remember_encryption,
)


def create_store(
    url: str,
    host: PluginHost,
    *,
    cache_root: Path,
    compression: str = "zstd",
    compression_level: int | None = None,
    encryption: str = "none",
    create: bool = True,
    chunker: ChunkerParams | None = None,
    pack_size: int | None = None,
    options: Mapping[str, Any] | None = None,
    password: PasswordSource = None,
    kdf: KdfParams | None = None,
    workers: int = 2,
    group_access: bool = False,
) -> Store:
    """Create a new, empty repository at ``url`` and return its store.

    With an ``encryption`` other than ``none`` a random master key is made and wrapped under
    ``password`` in ``keys/<id>``. ``create`` lets the backend make its container (a local
    directory; buckets are never created here). A local repository's files are ``0600`` and
    its folders ``0700``; ``group_access`` makes them ``0640`` and ``0750`` (the config's mode
    tells later writers which, see the local backend).
    """
    host.compressors.get(compression)(compression_level)  # fail before writing anything
    if group_access:
        if is_remote_url(url):
            raise ConfigError(
                "--group-access is for a repository in a local directory; a bucket's access is "
                "set by its provider"
            )
        options = {**(options or {}), "group_access": True}
    encryptor_factory = host.encryptors.get(encryption)
    master: MasterKey | None = None
    secret: str | None = None
    if encryption != "none":
        secret = require_usable_password(resolve_password(password, url))
        master = MasterKey.generate()
        encryptor_factory(master.encryption)  # the key fits the cipher
    backend = open_backend(url, host, create=create, options=options)
    try:
        try:
            backend.stat("config")
        except ObjectNotFoundError:
            pass
        else:
            raise RepositoryExistsError(f"a repository already exists at {backend.location}")
        key_id = None
        if master is not None and secret is not None:
            # The key goes first: a crash before `config` leaves no repository, only a stray key.
            key_id = add_key(backend, master, secret, kdf)
        config = RepositoryConfig(
            id=secrets.token_hex(16),
            chunker=(chunker or ChunkerParams()).to_json(),
            compression=compression,
            compression_level=compression_level,
            encryption=encryption,
            pack_size=pack_size or DEFAULT_PACK_SIZE,
        )
        if master is not None:
            config = attrs.evolve(config, mac=config.compute_mac(master.raw()))
        try:
            backend.write("config", config.to_bytes())
        except ObjectExistsError:
            raise RepositoryExistsError(
                f"a repository already exists at {backend.location}"
            ) from None
    except BaseException:
        backend.close()
        raise
    cache_dir = cache_dir_for(cache_root, backend, config)
    remember_encryption(cache_dir, config, backend.location)
    return Store(
        backend,
        config,
        host,
        cache_dir=cache_dir,
        workers=workers,
        master_key=master,
        key_id=key_id,
    )
