"""Cut TCP connections on the loopback interface without closing them: nftables drops every
packet to or from the given client ports, so neither end sees a FIN or an RST — what a host
that lost power or its network looks like to the database server. Root only."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

_tables = itertools.count()


def _nft(*args: str, stdin: str | None = None) -> None:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    done = subprocess.run([nft, *args], input=stdin, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError(f"nft {' '.join(args)} failed: {done.stderr.strip()}")


@contextmanager
def cut(ports: Iterable[int]) -> Iterator[None]:
    ports = sorted(set(ports))
    assert ports, "no connection to cut"
    table = f"drains_cut_{os.getpid()}_{next(_tables)}"
    port_set = ", ".join(str(p) for p in ports)
    _nft("-f", "-", stdin=(
        f"table inet {table} {{\n"
        f"  chain input {{ type filter hook input priority -10; policy accept;\n"
        f"    iifname \"lo\" tcp sport {{ {port_set} }} drop\n"
        f"    iifname \"lo\" tcp dport {{ {port_set} }} drop\n"
        f"  }}\n"
        f"}}\n"
    ))
    try:
        yield
    finally:
        _nft("delete", "table", "inet", table)
