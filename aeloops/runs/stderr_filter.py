"""Keeps TensorFlow's C++ start-up chatter off a user's terminal, and passes everything else through.

TensorFlow's C++ runtime writes its start-up notices (absl's "All log
messages before absl::InitializeLog()", the oneDNN notice, CUDA stub
messages, the CPU feature note) straight to file descriptor 2, before any
Python code can set a log level, and ``TF_CPP_MIN_LOG_LEVEL`` does not stop
all of them. ``StderrFilter`` points descriptor 2 at a pipe and forwards
every line that is not one of those known notices to the real stderr, so
errors, warnings and tracebacks still reach the user, in order.

No TensorFlow here: the filter must be in place before TensorFlow loads.

>>> with StderrFilter():          # doctest: +SKIP
...     import tensorflow as tf   # its start-up lines never reach the terminal
"""

from __future__ import annotations

import os
import re
import sys
import threading
from types import TracebackType

__all__ = ["SHOW_ALL_VARIABLE", "StderrFilter", "is_startup_chatter"]

# Set to 1 to see everything TensorFlow prints (for debugging an install).
SHOW_ALL_VARIABLE = "AELOOPS_SHOW_TF_LOGS"

# The C++ sources of the notices TensorFlow prints on every start on a
# machine without a GPU, as absl formats them: "I0000 00:00:...  123 port.cc:153] ...".
_CHATTER_SOURCES = (
    "port.cc",
    "cudart_stub.cc",
    "cuda_platform.cc",
    "cuda_executor.cc",
    "cuda_dnn.cc",
    "cuda_fft.cc",
    "cuda_blas.cc",
    "cpu_feature_guard.cc",
    "computation_placer.cc",
)
_ABSL_LINE = re.compile(r"^[IWE]\d{4} [\d:.]+\s+\d+ (?P<source>[\w.]+):\d+\] ")
_CHATTER_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    # The second line of cpu_feature_guard.cc's note.
    "To enable the following instructions:",
)


# What XLA logs on loading an executable from its persistent cache
# (aeloops.training.compile_cache), for every cached executable, all harmless: that a
# cache file is not a text proto (it then reads it as binary), and that the
# compiler's tuning options, which are not CPU instructions, are missing from
# the host's feature list. A missing instruction set (a real mismatch) is still shown.
_CACHE_NOTES = {
    "text_format.cc": re.compile(r"Error parsing text-format tensorflow\.XlaSerializedCacheEntry: "),
    "cpu_aot_loader.cc": re.compile(r"Loading XLA:CPU AOT result\. Target machine feature \+prefer-[\w-]+ is not "),
}


def is_startup_chatter(line: str) -> bool:
    """Returns whether ``line`` is one of TensorFlow's known start-up notices."""
    match = _ABSL_LINE.match(line)
    if match:
        if match.group("source") in _CACHE_NOTES:
            return bool(_CACHE_NOTES[match.group("source")].match(line, match.end()))
        return match.group("source") in _CHATTER_SOURCES
    return line.startswith(_CHATTER_LINES)


class StderrFilter:
    """While active, drops TensorFlow's start-up notices from file descriptor 2; see the module docstring.

    Does nothing when ``AELOOPS_SHOW_TF_LOGS=1`` or when descriptor 2 cannot
    be redirected.
    """

    def __init__(self) -> None:
        self._original: int | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StderrFilter:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Starts filtering descriptor 2."""
        if self._original is not None or os.environ.get(SHOW_ALL_VARIABLE) == "1":
            return
        try:
            sys.stderr.flush()
            reader, writer = os.pipe()
            self._original = os.dup(2)
            os.dup2(writer, 2)
            os.close(writer)
        except OSError:  # No descriptor 2 to redirect (an embedded interpreter, say).
            self._original = None
            return
        self._thread = threading.Thread(target=self._forward, args=(reader, self._original), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Restores descriptor 2 after forwarding everything written so far."""
        if self._original is None:
            return
        sys.stderr.flush()
        os.dup2(self._original, 2)  # Closes the pipe's last writer: the thread reads to its end.
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(self._original)
        self._original = None

    @staticmethod
    def _forward(reader: int, destination: int) -> None:
        with os.fdopen(reader, "rb", buffering=0) as stream:
            pending = b""
            while chunk := stream.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = [line for line in lines if not is_startup_chatter(line.decode("utf-8", "replace"))]
                if kept:
                    os.write(destination, b"\n".join(kept) + b"\n")
                # A progress bar redraws its line with "\r" and no newline: pass it on at once.
                if pending and not _could_be_chatter(pending):
                    os.write(destination, pending)
                    pending = b""
            if pending and not is_startup_chatter(pending.decode("utf-8", "replace")):
                os.write(destination, pending)


def _could_be_chatter(partial: bytes) -> bool:
    """Returns whether an unfinished line may still turn out to be a start-up notice."""
    text = partial.decode("utf-8", "replace")
    prefixes = (*_CHATTER_LINES, "I0", "W0", "E0")
    return any(prefix.startswith(text) or text.startswith(prefix) for prefix in prefixes)
