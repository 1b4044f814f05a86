"""``python -m messages_gateway_client``: see ``messages_gateway_client.cli``."""

from __future__ import annotations

import sys

from messages_gateway_client.cli import main

if __name__ == "__main__":
    sys.exit(main())
