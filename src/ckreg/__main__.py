"""`python -m ckreg` runs the CLI."""

from ckreg.cli import main

if __name__ == "__main__":
    main()
