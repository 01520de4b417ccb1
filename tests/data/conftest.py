"""Data tests run with network access blocked: every internet socket connection raises."""

import socket

import pytest


class NetworkBlocked(RuntimeError):
    """Raised by any attempt to open an internet connection during the data tests."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    original_connect = socket.socket.connect

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise NetworkBlocked(f"network access attempted during a data test: {address}")
        return original_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect)
    yield
