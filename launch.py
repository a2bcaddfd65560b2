#!/usr/bin/env python
"""finesweep's entry point: `python launch.py sweep spaces/digits_cnn.yaml` (see README)."""

from finesweep.search.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
