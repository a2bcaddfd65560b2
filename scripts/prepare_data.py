"""Builds the offline data sets of the text and speech tasks (idempotent; quiet when done).

Usage:  python scripts/prepare_data.py [--force]

- text_classification: checks that Debian's fortunes are installed (apt-get install fortunes).
- speech_recognition: synthesises the spoken digits with espeak-ng into
  $FINESWEEP_CACHE/speech_digits (default ~/.cache/finesweep/speech_digits), about 40 s once;
  skipped when the cache's manifest matches.
Exits 1 with how to install what is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finesweep.models import speech_data, text_data  # noqa: E402
from finesweep.models.data_sources import MissingDataSource  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild the speech cache")
    args = parser.parse_args(argv)
    problems = []
    categories = text_data.parse_categories(text_data.DEFAULT_CATEGORIES)
    try:
        text_data.check_fortunes(categories)
    except MissingDataSource as error:
        problems.append(f"text_classification: {error}")
    try:
        if speech_data.build_cache(force=args.force):
            print(f"finesweep: built the spoken digits in {speech_data.cache_dir()}")
    except MissingDataSource as error:
        problems.append(f"speech_recognition: {error}")
    for problem in problems:
        print(f"finesweep: {problem}", file=sys.stderr)
    if not problems:
        print(f"finesweep: task data ready (fortunes: {len(categories)} categories; "
              f"spoken digits: {speech_data.cache_dir()})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
