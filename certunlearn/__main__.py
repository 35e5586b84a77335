"""``python -m certunlearn``: the command line of :mod:`certunlearn.cli`."""

from certunlearn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
