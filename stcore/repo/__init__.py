"""The repository engine: a Store over the backend and one module per operation (backup, restore,
check, prune, forget, diff, keys, locks, stats, init, repair). It reads no environment, no
configuration file and no working directory: what it needs is passed in."""
