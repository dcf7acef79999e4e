"""`python -m orchestrator.cli ARGS` is `lab ARGS`."""

import sys

from orchestrator.cli.main import main

sys.exit(main())
