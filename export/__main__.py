"""`python -m export --run RUN [--config x.yaml] [key=value ...]`: see export.bundle."""

import sys

from export.bundle import main

sys.exit(main())
