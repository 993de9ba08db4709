"""``python -m edge``: the ``percepnet-edge`` command without the installed entry point."""
from edge.commands.cli import main

if __name__ == "__main__":          # importing the module (a package walk) must not run a command
    raise SystemExit(main())
