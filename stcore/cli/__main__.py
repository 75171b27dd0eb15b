"""``python -m stcore.cli``: the ``stcore`` command."""

from stcore.cli import main

main()
