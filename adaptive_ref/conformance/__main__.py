"""``python -m adaptive_ref.conformance [options]`` is ``adaptive-ref conform [options]``."""

import sys

from .cli import main

sys.exit(main())
