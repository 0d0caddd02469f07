"""`python -m zerosum.cli ...`: the same as the `zerosum` command."""

import sys

from zerosum.cli import main

sys.exit(main())
