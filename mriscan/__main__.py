"""``python -m mriscan`` runs the command line."""

from mriscan.cli import main

if __name__ == "__main__":  # not when imported (e.g. by pytest's doctest collection)
    main()
