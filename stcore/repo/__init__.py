"""The repository engine: format, chunker, packer, backup, restore and check."""
