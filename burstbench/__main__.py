"""``python -m burstbench`` is the ``burstbench`` command."""
import sys

from .cli import main

sys.exit(main())
