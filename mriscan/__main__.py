"""``python -m mriscan`` runs the command line."""

from mriscan.cli import main

main()
