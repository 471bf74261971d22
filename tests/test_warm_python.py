"""The warm Python the tests fork (tests/warm_python.py) ends, prints and reads as ``python`` itself does.

Each probe runs twice, by ``sys.executable`` and by the warm Python, and
both must answer alike: what the program saw (arguments, directory,
environment, import path, stdin), what it printed, and how it ended (exit
status, or the signal that killed it). The probes import no TensorFlow, so
the cold runs cost milliseconds.
"""

import os
import select
import signal
import subprocess
import sys

import pytest

from tests import warm_python

SEEN = (
    "import os, sys; print(__name__, sys.argv[1:], os.getcwd(), sys.path[:2], os.environ.get('PROBE'), "
    "sys.stdin.read(), flush=True)"
)
PROBES = {
    "what it sees, then sys.exit(3)": ["-c", SEEN + "; sys.exit(3)", "one", "two words"],
    "sys.exit with a message": ["-c", "import sys; sys.exit('it went wrong')"],
    "an uncaught exception": ["-c", "print('before'); raise ValueError('bad value')"],
    "an uncaught Ctrl-C": ["-c", "raise KeyboardInterrupt"],
    "killed by its own SIGKILL": ["-c", "import os, signal; print('going', flush=True); os.kill(os.getpid(), 9)"],
    "print without flush, then os._exit": ["-c", "import os; print('lost unless unbuffered'); os._exit(4)"],
    "an atexit handler and a thread": [
        "-c",
        "import atexit, threading; atexit.register(print, 'at exit'); "
        "threading.Thread(target=lambda: print(sum(range(3_000_000)))).start()",  # Still summing at the end.
    ],  # fmt: skip
    "-m with arguments": ["-m", "probe", "--flag", "value"],
}


def run(command, tmp_path, unbuffered):
    (tmp_path / "probe.py").write_text(SEEN + "\nif __name__ == '__main__': raise SystemExit(5)\n")
    environment = {"PROBE": "value", "PYTHONPATH": str(tmp_path / "extra"), "PATH": "/usr/bin:/bin"}
    if unbuffered:
        environment["PYTHONUNBUFFERED"] = "1"
    result = subprocess.run(command, cwd=tmp_path, env=environment, input="from stdin", capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    last_line = (result.stderr.strip().splitlines() or [""])[-1]
    return result.returncode, result.stdout, last_line


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("probe", PROBES)
def test_a_program_run_warm_ends_prints_and_reads_as_python_runs_it(probe, unbuffered, tmp_path):
    arguments = PROBES[probe]
    cold = run([sys.executable, *arguments], tmp_path, unbuffered)
    warm = run(warm_python.command(arguments), tmp_path, unbuffered)
    assert warm == cold


def test_a_signal_to_the_process_started_reaches_the_program_and_ends_both_alike():
    waits = "import sys, time; print('ready', flush=True); time.sleep(60)"
    for command in ([sys.executable, "-c", waits], warm_python.command(["-c", waits])):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == -signal.SIGTERM


def test_a_launcher_killed_takes_its_program_with_it():
    # The program would sleep ten times as long as the test waits for it to end.
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"
    process = subprocess.Popen(warm_python.command(["-c", code]), stdout=subprocess.PIPE, text=True)
    pid = int(process.stdout.readline())
    program = os.pidfd_open(pid)
    process.kill()
    process.wait(timeout=60)
    ended, _, _ = select.select([program], [], [], 60)  # Readable once the program has ended.
    if not ended:
        os.kill(pid, signal.SIGKILL)  # Not left behind by a failing test.
    assert ended == [program]


def test_programs_from_two_servers_draw_their_own_string_hash_seeds_as_two_interpreters_do():
    code = ["-c", "print(hash('the same string'))"]
    first, second = (subprocess.run(warm_python.command(code, server=number), capture_output=True, text=True,
                                    check=True).stdout for number in (0, 1))  # fmt: skip
    assert first != second
