"""``python -m bungalow.daemon``: the same as the ``bungalowd`` command."""

import sys

from bungalow.daemon.server.main import main

sys.exit(main())
