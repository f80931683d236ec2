"""`python -m limpet` runs the command line."""

import sys

from limpet.cli import main

sys.exit(main())
