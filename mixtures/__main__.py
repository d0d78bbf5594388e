"""``python -m mixtures`` is the ``mixtures`` console command."""

import sys

from mixtures.cli import main

sys.exit(main())
