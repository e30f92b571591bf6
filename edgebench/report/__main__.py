"""``python -m edgebench.report``: see :mod:`edgebench.report.cli`."""

from edgebench.report.cli import main

if __name__ == "__main__":
    main()
