"""``python -m smoothlab``: the ``smoothlab`` command (:func:`smoothlab.cli.main`)."""

from __future__ import annotations

import sys

from smoothlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
