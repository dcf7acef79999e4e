"""`python3 -m orchestrator.agent VERB ...` runs the node agent from the source tree."""

import sys

from .main import main

sys.exit(main())
