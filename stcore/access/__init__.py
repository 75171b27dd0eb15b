"""AI access: the snapshot catalog, lazy snapshot views and the ``stcore://`` fsspec filesystem.

Read history without restoring it: :mod:`~stcore.access.catalog` answers queries by date, host,
tag, source and sync state from a local SQLite cache; :mod:`~stcore.access.views` reads one
source, file or chunk at a time; :mod:`~stcore.access.fs` lets pandas, pyarrow, DuckDB and Dask
read backed-up files through fsspec.
"""
