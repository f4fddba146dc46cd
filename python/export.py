"""Entry point of `cargo xtask export` (see python/README.md)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vidlm_export.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
