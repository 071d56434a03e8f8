"""``python -m deploy`` is ``deploy-tool``."""

import sys

from .cli import main

sys.exit(main())
