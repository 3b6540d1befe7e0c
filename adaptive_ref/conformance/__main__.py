"""``python -m adaptive_ref.conformance [options]`` is ``adaptive-ref conform [options]``."""

import sys

from .cli import main

if __name__ == "__main__":  # importing it (the docs build imports every module) runs nothing
    sys.exit(main())
