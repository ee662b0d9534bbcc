"""
``python -m bench.lab``: see ``bench.lab.run``.
"""

import sys

from bench.lab.run import main

sys.exit(main())
