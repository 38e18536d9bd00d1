"""The shards fleet: two builders (the first joins and publishes), one repl host."""

import os
import sys

sys.path.insert(0, os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'tests', 'fleet'))
from fleetlib import as_root, as_user, downloads, solo_installs  # noqa: E402,F401 pylint: disable=unused-import
