"""Allow ``python -m uniformer.cli``."""

import sys

from uniformer.cli import main

sys.exit(main())
