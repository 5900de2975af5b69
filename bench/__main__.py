"""`python -m bench ...`: the same as the `bench` console script (exit 2 on bad input)."""

from bench.cli import main

raise SystemExit(main())
