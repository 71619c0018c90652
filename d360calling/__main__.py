"""``python -m d360calling``: the same as the ``d360calling`` command (``--version`` too)."""

import sys

from ._cli import main

__all__ = ()

if __name__ == "__main__":  # importing this module (docs tools do) runs nothing
    sys.exit(main())
