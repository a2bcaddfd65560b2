#!/usr/bin/env python
"""finesweep's entry point: `python launch.py sweep spaces/digits_cnn.yaml` (see README)."""

from finesweep.search.signals import run_command

if __name__ == "__main__":
    run_command()
