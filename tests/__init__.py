"""The test suite and the benchmarks (``tests.bench``).

Imported before either loads grpc: grpc core's fork handlers, run in a child that the test or
bench process forks while its own gRPC threads are busy, crashed that child before it could exec
(a gateway "exited -11 at start" with nothing on its stderr, 2 runs in 22 of
tests/reliability/test_shutdown.py; 0 in 30 without them). Every child here execs a new
interpreter, which needs none of those handlers.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
