"""``python -m dre`` is the same as the ``dre`` console script (tests use it to run the worktree's code)."""

from dre.cli import main

raise SystemExit(main())
