"""Repository-wide pytest set-up: notebooks run in quick mode under the test suite."""

import os

os.environ.setdefault("SMOOTHLAB_QUICK", "1")
