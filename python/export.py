"""Entry point of `cargo xtask export` (see python/README.md)."""
import sys

from vidlm_export.cli import main

if __name__ == "__main__":
    sys.exit(main())
