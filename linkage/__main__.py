"""``python -m linkage``: the same command line as the ``linkage`` script."""

from linkage.cli import main

if __name__ == "__main__":
    main()
