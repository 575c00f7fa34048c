"""Runs every Python example of README.md, in order, against a fresh Pier."""
import contextlib
import io
import os
import re

import pytest

from servers import PierServer

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
EXAMPLE_ENDPOINT = "127.0.0.1:2379"


def examples():
    text = open(README).read()
    found = []
    for match in re.finditer(r"^## (.+?)$|^```python\n(.*?)^```", text, re.M | re.S):
        if match.group(1):
            section = match.group(1).strip().lower().replace(" ", "-")
            count = 0
        else:
            count += 1
            found.append((f"{section}-{count}", match.group(2)))
    return found


def params():
    return [pytest.param(code, id=name) for name, code in examples()]


@pytest.fixture(scope="module")
def readme_server():
    # Its own server: the examples use fixed names ("orders", "lock") and compact the store.
    server = PierServer()
    yield server
    server.stop()


def test_readme_has_every_example():
    names = [name for name, _ in examples()]
    for section in ("key-value", "watch", "leases", "produce", "consume", "errors"):
        assert any(name.startswith(section) for name in names), section


@pytest.mark.parametrize("code", params())
def test_example(code, readme_server):
    assert EXAMPLE_ENDPOINT in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace(EXAMPLE_ENDPOINT, readme_server.address), README, "exec"),
             {"__name__": "__main__"})
    assert out.getvalue()  # every example prints what it shows
