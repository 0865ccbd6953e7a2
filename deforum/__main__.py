"""``python -m deforum``: the same command as the ``deforum`` console script."""

import sys

from deforum.cli import main

if __name__ == "__main__":
    sys.exit(main())
