"""A real Milvus gRPC endpoint for tests: the installed milvus-lite as a server process on a
loopback port, so that tests can kill it (-9) and start it again on the same data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

# The installed embedded engine: native C++ milvus-lite 2.x or the Python 3.x.
NATIVE_LITE = metadata.version("milvus-lite").startswith("2.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(data_dir: Path, port: int) -> tuple[list[str], dict[str, str]]:
    if NATIVE_LITE:
        # Native milvus-lite 2.5: its C++ server binary takes <db file> <address> <log level>
        # (what milvus_lite.server.Server runs when given an address).
        import milvus_lite

        lib = Path(milvus_lite.__file__).parent / "lib"
        env = dict(os.environ, LD_LIBRARY_PATH=f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}")
        return [str(lib / "milvus"), str(data_dir / "milvus.db"), f"127.0.0.1:{port}", "ERROR"], env
    return [
        sys.executable,
        "-m",
        "milvus_lite",
        "server",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ], dict(os.environ)


class MilvusProcess:
    def __init__(self, data_dir: Path, port: int):
        self.data_dir, self.port, self.proc = Path(data_dir), port, None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command, env = _command(self.data_dir, self.port)
        self.proc = subprocess.Popen(
            command, env=env, cwd=self.data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"milvus-lite server exited with {self.proc.returncode}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError("milvus-lite server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
