"""`python -m jiyi ...`, also `accelerate launch -m jiyi train ...`."""

import sys

from jiyi.cli import main

sys.exit(main())
