"""``python -m geosynth`` runs the command-line interface."""

from geosynth.cli import main

if __name__ == "__main__":
    main()
