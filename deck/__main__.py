"""`python -m deck`."""

from __future__ import annotations

import sys

from deck.app import main

sys.exit(main())
