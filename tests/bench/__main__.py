"""``python -m tests.bench [SUITE ...]``: run every benchmark suite, or the ones named."""

from __future__ import annotations

import sys

from tests.bench import main

sys.exit(main())
