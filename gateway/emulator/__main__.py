"""``python -m gateway.emulator [HOST:PORT]``: run the emulator until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

from gateway.emulator.server import serve

if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8099")
