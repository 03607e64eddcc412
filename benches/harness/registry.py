"""A private `docker-registry` on a free loopback port, behind a byte-counting TCP proxy.

Bytes uploaded cannot be read from the registry's storage growth: the registry stores each blob
once, so a second cold push of identical layers to a fresh repository would count as nothing.
The proxy counts what clients send (uploads) and receive (pulls); it moves the bytes with
`splice(2)` so it costs the builders next to no CPU on a two-core machine."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from .errors import BenchError

CHUNK = 1 << 20


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Counter:
    """Bytes moved in one direction, shared by the proxy's pump threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0

    def add(self, count: int) -> None:
        with self._lock:
            self._total += count

    def total(self) -> int:
        with self._lock:
            return self._total


def pump(source: socket.socket, sink: socket.socket, counter: Counter) -> None:
    """Copies one direction of a connection until EOF, counting the bytes."""
    read_end, write_end = os.pipe()
    try:
        while True:
            moved = os.splice(source.fileno(), write_end, CHUNK)
            if moved == 0:
                break
            counter.add(moved)
            while moved:
                moved -= os.splice(read_end, sink.fileno(), moved)
    except OSError:
        pass
    finally:
        os.close(read_end)
        os.close(write_end)
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class CountingProxy:
    """Forwards every connection on its port to `upstream`, counting both directions."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.sent = Counter()
        self.received = Counter()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=pump, args=(server, client, self.received), daemon=True)
        back.start()
        pump(client, server, self.sent)
        back.join()
        client.close()
        server.close()

    def close(self) -> None:
        self.listener.close()


class Registry:
    """The registry every builder pushes to. `addr` is the counted address builders use;
    `direct` bypasses the proxy for the harness's own setup and inspection traffic."""

    def __init__(self, workdir: Path, binary: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.storage = workdir / "storage"
        port = free_port()
        self.direct = f"127.0.0.1:{port}"
        config = workdir / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.direct}\n"
        )
        self.log = workdir / "registry.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self._wait_ready()
        self.proxy = CountingProxy(("127.0.0.1", port))
        self.addr = f"127.0.0.1:{self.proxy.port}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"docker-registry exited with {self.process.returncode}: see {self.log}")
            try:
                with urllib.request.urlopen(f"http://{self.direct}/v2/", timeout=2):
                    return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"docker-registry did not answer on {self.direct} within 30 s: see {self.log}")

    def uploaded(self) -> int:
        """Bytes clients have sent through the proxy so far."""
        return self.proxy.sent.total()

    def close(self) -> None:
        self.proxy.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
