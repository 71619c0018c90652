"""``python -m d360calling``: the same as the ``d360calling`` command."""

import sys

from ._cli import main

__all__ = ()

sys.exit(main())
