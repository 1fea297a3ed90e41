"""``python -m aioqwenimage``: the same as the ``aioqwenimage`` command."""

import sys

from aioqwenimage._cli import main

sys.exit(main())
