"""Runs the gateway fuzzer for a bounded time (PIER_FUZZ_SECONDS, default 60; PIER_FUZZ_SEED to replay)."""
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from fuzz_gateway import MIB, fuzz  # noqa: E402
from pier_servers import start_test_server  # noqa: E402


def test_fuzz_gateway():
    seconds = float(os.environ.get("PIER_FUZZ_SECONDS", "60"))
    seed = int(os.environ.get("PIER_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    server = start_test_server()
    try:
        fuzz(server.address, server.pid, seconds, seed, workers=4, rss_limit=128 * MIB, alive=server.alive,
             log=lambda line: print(line, file=sys.stderr))
    finally:
        code = server.stop()
    assert code == 0, f"server exited with {code} after fuzzing (seed {seed}); stderr:\n{server.stderr()}"
