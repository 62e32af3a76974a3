"""Shared fixtures: no network beyond loopback, small stores, the real sample files."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str | bytes) and not isinstance(address, tuple):
        return True  # AF_UNIX paths
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost",)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests talk to 127.0.0.1 only (torchgeo's rule): any other address fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def realdata() -> Path:
    """``../shared/realdata`` beside the repository; skipped where it is absent (a user's clone)."""
    if not REALDATA.is_dir():
        pytest.skip(f"real sample files not found at {REALDATA}")
    return REALDATA


@pytest.fixture
def geonrw_classes():
    from geosynth.catalog import load_catalog

    return [
        {"id": c.id, "key": c.key, "name": c.name, "color": c.color}
        for c in load_catalog().classes.classes
    ]
