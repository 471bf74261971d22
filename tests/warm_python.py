"""``python -m`` and ``python -c`` for tests, forked from a process that has already imported TensorFlow.

A test that must run aeloops in another process (to kill it, signal it, or run
two workers) would pay about seven CPU-seconds to import TensorFlow again. A
server per pytest worker imports TensorFlow and Keras once and forks a fresh
program for each command; the test still starts a real process, this file
run as a small launcher, which hands the server its stdin, stdout, stderr,
working directory, environment and arguments, forwards the signals it gets
and ends as the program ended (its exit status, or the signal that killed it).
So ``subprocess`` works on it unchanged: pipes, ``communicate``, timeouts,
``send_signal``.

What such a program does not get from its own interpreter is a fresh import
of TensorFlow and Keras: the tests of what starting Python shows or loads
(first imports, the terminal's first lines, the compile cache across
processes, the startup benchmark) run ``sys.executable`` itself. aeloops is
never imported by the server: each program imports it as a fresh process
does (with Keras already loaded, as in a notebook).

Usage: ``command(["-m", "aeloops.train", ...])`` in place of
``[sys.executable, "-m", "aeloops.train", ...]``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import socket
import sys

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def command(arguments: list[str], server: int = 0) -> list[str]:
    """Returns the command that runs ``python <arguments>`` (``-m module ...`` or ``-c code ...``) forked warm.

    Programs forked by one server share its string-hash seed, which separate
    interpreters draw each for itself: processes that must differ in it (the
    workers of one cluster, where an order taken from a set would have to
    agree) come from different ``server`` numbers.
    """
    if arguments[0] not in ("-m", "-c"):
        raise ValueError(f"a warm Python runs -m or -c, not {arguments[0]!r}")
    return [*python(server), *arguments]


def python(server: int = 0) -> list[str]:
    """Returns what stands for ``sys.executable`` in a command that goes on with ``-m`` or ``-c``."""
    if not hasattr(os, "pidfd_open"):  # Not Linux: the supervisor cannot wait on its program; Python starts cold.
        return [sys.executable]
    # -S -E: the launcher needs neither site-packages nor the environment's PYTHON* settings (the program does).
    return [sys.executable, "-S", "-E", __file__, _server_address(server)]


_servers: dict[tuple[int, int], str] = {}  # By the test process's pid and the server's number.


def _server_address(server: int) -> str:
    import atexit
    import shutil
    import subprocess
    import tempfile

    key = (os.getpid(), server)
    if key in _servers:
        return _servers[key]
    directory = tempfile.mkdtemp(prefix="aeloops-warm-")
    address = os.path.join(directory, "socket")
    # Its stdin is a pipe the test process never writes to: at its end (the test process gone), the server ends.
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", address], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    # The server says it is ready (TensorFlow imported, socket listening) by letting its stderr go.
    with process.stderr:
        error = process.stderr.read()
    if process.poll() is not None or not os.path.exists(address):
        raise RuntimeError(f"the warm Python server did not start: {error.decode()[-2000:]}")
    _servers[key] = address
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    atexit.register(process.kill)
    return address


# The server: one per pytest worker. It never runs TensorFlow, only imports it, so a fork starts clean.


def _serve(address: str) -> None:
    import numpy  # noqa: F401
    import tensorflow  # noqa: F401  (and Keras, which TensorFlow imports)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # Each request's supervisor is reaped by the kernel.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # Ready: the test process reads our stderr to its end.
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready:  # The test process has ended.
            return
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os._exit(_supervise(connection))
        connection.close()


def _supervise(connection: socket.socket) -> int:
    """Forks the requested program, tells the launcher its pid, waits for it and tells its status."""
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    request = json.loads(message)
    pid = os.fork()
    if pid == 0:
        connection.close()
        _become_program(request, fds)
    for fd in fds:
        os.close(fd)
    connection.sendall(f"{pid}\n".encode())
    # The launcher gone (killed) before its program: the program is killed too, as a child of a killed shell.
    process = os.pidfd_open(pid)
    ready, _, _ = select.select([process, connection], [], [])
    if process not in ready:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    with contextlib.suppress(OSError):  # The launcher may be gone: it was killed.
        connection.sendall(f"{status}\n".encode())
    return 0


def _become_program(request: dict, fds: list[int]) -> None:
    """In the forked child: takes the launcher's streams, directory, environment and arguments, and runs."""
    import atexit
    import runpy
    import threading
    import traceback
    import types

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for number in _FORWARDED:  # As a fresh interpreter has them: Ctrl-C raises, the others end the process.
        signal.signal(number, signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False))  # noqa: SIM115 (the program's own, for its life)
    sys.stdout = _text_stream(1, unbuffered)
    sys.stderr = _text_stream(2, unbuffered, errors="backslashreplace")
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    option, target, *rest = request["argv"]
    extra_path = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    sys.path[:1] = [os.getcwd() if option == "-m" else "", *extra_path]
    code = 0
    try:
        if option == "-m":
            sys.argv = [target, *rest]
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.argv = ["-c", *rest]
            main = types.ModuleType("__main__")
            sys.modules["__main__"] = main
            exec(compile(target, "<string>", "exec"), main.__dict__)
    except SystemExit as exit:
        code = _exit_status(exit.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT  # As Python ends on an uncaught Ctrl-C: killed by SIGINT.
    except BaseException:
        traceback.print_exc()
        code = 1
    # What the interpreter does on its way out: join threads, run atexit, flush.
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    _end(code)


def _end(code: int) -> None:
    """Ends this process with exit status ``code`` or, when it is negative, killed by signal ``-code``."""
    if code < 0:
        if -code in _FORWARDED:  # Caught until now; SIGKILL cannot be.
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def _text_stream(fd: int, unbuffered: bool, errors: str = "strict") -> io.TextIOWrapper:
    raw = open(fd, "wb", buffering=0, closefd=False)  # noqa: SIM115 (the program's own, for its life)
    interactive = os.isatty(fd)
    binary = raw if unbuffered else io.BufferedWriter(raw)
    return io.TextIOWrapper(binary, errors=errors, line_buffering=interactive, write_through=unbuffered)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


# The launcher: the process the test starts. Standard library only, no site-packages: it starts in milliseconds.


def _launch(address: str, arguments: list[str]) -> None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(address)
    request = {"argv": arguments, "cwd": os.getcwd(), "env": dict(os.environ)}
    socket.send_fds(connection, [json.dumps(request).encode()], [0, 1, 2])
    replies = connection.makefile("r")
    pid = int(replies.readline())
    for number in _FORWARDED:
        signal.signal(number, lambda received, frame: os.kill(pid, received))
    line = replies.readline()
    if not line:
        sys.exit(f"{__file__}: the warm Python server went away")
    _end(os.waitstatus_to_exitcode(int(line)))


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        _serve(sys.argv[2])
    else:
        _launch(sys.argv[1], sys.argv[2:])
