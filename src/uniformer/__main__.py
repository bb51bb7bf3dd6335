"""Allow ``python -m uniformer`` as an alias of the ``uniformer`` command."""

import sys

from uniformer.cli import main

sys.exit(main())
