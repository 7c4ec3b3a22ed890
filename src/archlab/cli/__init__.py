"""The ``archlab`` command line (``archlab.cli:main``): list, show, train, reproduce, report, new.

The run's policy (torch threads, device) is set here, once, and recorded in what the run writes;
library code never changes process state.
"""

from archlab.cli.main import main

__all__ = ["main"]
