"""Child processes that are always cleaned up: ``make run`` and the benchmarks.

Every child starts in its own session (its own process group), so stopping it
also stops anything it forked (a uvicorn reloader's worker, a shell's
children), and ``ChildProcesses`` stops them all on exit, on SIGTERM and on
Ctrl-C: a crashed run leaves no server holding a port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

STOP_TIMEOUT_S = 8.0


@dataclass
class Child:
    """A started process with a name for messages and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None

    @property
    def pid(self) -> int:
        """The child's pid (also its process group id)."""
        return self.process.pid

    def tail(self, lines: int = 30) -> str:
        """The last lines of the child's log, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class ChildProcesses:
    """Starts children and stops every one of them, whatever happens.

    Use as a context manager; ``stop_all`` runs on exit, and SIGTERM is turned
    into ``KeyboardInterrupt`` while the context is open so that the same
    clean-up path runs when a supervisor stops us.
    """

    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self._previous_sigterm: Any = None

    def __enter__(self) -> ChildProcesses:
        self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop_all()
        finally:
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cpus: str | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | IO[bytes] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        """Start ``argv`` (pinned to ``cpus`` with taskset when given).

        Output goes to ``<log_dir>/<name>.log`` unless ``stdout`` is given
        (a pipe for processes driven over stdio); stderr always goes to the
        log so that a failure can be shown.
        """
        command = list(argv)
        if cpus is not None:
            command = ["taskset", "-c", cpus, *command]
        log_path = None
        log_file: IO[bytes] | int = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            log_file = log_path.open("wb")
        try:
            process = subprocess.Popen(
                command,
                env=dict(env) if env is not None else None,
                stdin=stdin,
                stdout=stdout if stdout is not None else log_file,
                stderr=log_file,
                cwd=cwd,
                start_new_session=True,
                # preexec_fn is unsafe only when threads fork concurrently;
                # children are started from the main thread only.
                preexec_fn=_die_with_parent,
            )
        finally:
            if not isinstance(log_file, int):
                log_file.close()  # the child holds its own descriptor
        child = Child(name=name, process=process, log_path=log_path)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the child's process group, SIGKILL it after ``timeout``."""
        if child.process.poll() is None:
            _signal_group(child.pid, signal.SIGTERM)
            try:
                child.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(child.pid, signal.SIGKILL)
                child.process.wait(timeout=timeout)
        # Members of the group that outlived the leader are stopped too.
        _signal_group(child.pid, signal.SIGKILL)
        if child in self.children:
            self.children.remove(child)
        return child.process.returncode

    def stop_all(self) -> None:
        """Stop every child, newest first (clients before the servers they use)."""
        for child in reversed(list(self.children)):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self.stop(child)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies, even by SIGKILL.

    Children run in their own sessions (so a terminal's Ctrl-C reaches only
    us, and we stop them in order); without this, a ``kill -9`` of the parent
    would leave them running and holding their ports.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _raise_interrupt(signum: int, frame: object) -> None:
    del signum, frame
    raise KeyboardInterrupt


class StartupError(RuntimeError):
    """A child did not become ready; the message carries its log's tail."""


def wait_http_ok(child: Child, url: str, timeout_s: float = 60.0) -> None:
    """Poll ``url`` until it answers 200, the child exits, or time runs out."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise StartupError(
                f"{child.name} exited with code {child.process.returncode} before it was "
                f"ready:\n{child.tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 - loopback URL we built
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.2)
    raise StartupError(
        f"{child.name} not ready at {url} after {timeout_s:.0f}s ({last_error}):\n{child.tail()}"
    )
