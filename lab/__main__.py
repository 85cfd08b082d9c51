"""`python3 -m lab ...`: the lab's command line (lab/cli.py); humans use hack/lab.sh."""

import sys

from lab.cli import main

sys.exit(main())
