"""Reproduces README's first-run transcript: ``python -m aeloops.train`` as a new user sees it in a terminal.

The run happens in a pseudo-terminal (so Keras draws its progress bar, as on
a screen) in a scratch directory, on the bundled sample when MNIST cannot be
downloaded (as on a machine without a network). What the terminal shows is
kept: each line as its last carriage return left it, colours removed, the
epochs between the first and the last elided. Its figures are one machine's:
another machine's losses differ in the last digits and its times more.

    python tools/transcript.py                  # print the transcript
    python tools/transcript.py --update-readme  # and write it, and its picture, into README.md and docs/
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import pty
import re
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- transcript: first-run -->\n```text\n)(.*?)(```)", re.S)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def screen_lines(raw: str) -> list[str]:
    """Returns the lines a terminal shows for ``raw``: each line's text after its last carriage return."""
    text = ANSI.sub("", raw.replace("\r\n", "\n"))
    return [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n") if line.rsplit("\r", 1)[-1].strip()]


def elide_epochs(lines: list[str]) -> list[str]:
    """Keeps the first and the last epoch (their header and bar lines), with "..." for those between."""
    headers = [index for index, line in enumerate(lines) if re.fullmatch(r"Epoch \d+/\d+", line)]
    if len(headers) <= 2:
        return lines
    return [*lines[: headers[1]], "...", *lines[headers[-1] :]]


def run_in_terminal(arguments: list[str], cwd: pathlib.Path) -> str:
    """Runs the CLI with ``arguments`` in a pseudo-terminal in ``cwd``; returns everything it wrote there."""
    leader, follower = pty.openpty()
    environment = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "aeloops.train", *arguments],
        cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # The child closed the terminal: it has exited.
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    if process.wait() != 0:
        raise SystemExit(f"python -m aeloops.train {' '.join(arguments)} failed:\n{b''.join(chunks).decode()[-2000:]}")
    return b"".join(chunks).decode("utf-8", "replace")


def _cpu() -> str:
    """The processor's model name where Linux says it, else the architecture."""
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    found = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    return found[1].strip() if found else platform.machine()


def main(argv: list[str] | None = None) -> int:
    """Prints the transcript (and with ``--update-readme`` writes it and its picture into the repository)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--update-readme", action="store_true", help="write the transcript into README.md")
    parser.add_argument("--epochs", type=int, default=None, help="train this many epochs (default: the CLI's)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aeloops-first-run-") as scratch:
        arguments = [] if args.epochs is None else ["--epochs", str(args.epochs)]
        lines = elide_epochs(screen_lines(run_in_terminal(arguments, pathlib.Path(scratch))))
        transcript = "\n".join(lines) + "\n"
        print(transcript, end="")
        print(f"(one run: {_cpu()}, {os.cpu_count()} CPUs, Python {platform.python_version()})")
        if args.update_readme:
            readme = REPO / "README.md"
            text = readme.read_text(encoding="utf-8")
            if not BLOCK.search(text):
                raise SystemExit("README.md has no <!-- transcript: first-run --> block.")
            readme.write_text(BLOCK.sub(lambda match: match[1] + transcript + match[3], text), encoding="utf-8")
            [picture] = pathlib.Path(scratch).glob("runs/*/reconstructions.png")
            shutil.copy(picture, REPO / "docs" / "first-run.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
