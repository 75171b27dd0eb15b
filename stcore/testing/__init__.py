"""Contract tests every plugin runs: subclass one, provide its fixture, and pytest does the rest.

Example, in a backend plugin's tests::

    import pytest
    from stcore.testing import BackendContract

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend.open(str(tmp_path), options={}, create=True)

The built-ins and st-local run these same classes, so a third-party plugin that passes them
behaves like the ones stcore ships.
"""

from stcore.testing.contracts import (
    BackendContract,
    CompressorContract,
    EncryptorContract,
    SourceContract,
)

__all__ = ["BackendContract", "CompressorContract", "EncryptorContract", "SourceContract"]
