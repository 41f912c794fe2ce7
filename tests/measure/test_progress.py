"""What a person watching a measure stage sees: a bar on a terminal, one summary line per artifact, no
per-request HTTP log lines."""
import fcntl
import logging
import os
import pty
import struct
import subprocess
import sys
import termios

from localbench.config.params import setup_logging
from localbench.measure.progress import summary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def on_terminal(code: str) -> str:
    """Run `code` with stdout/stderr on a 110x30 pseudo-terminal; what it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 110, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=slave, stderr=slave, cwd=ROOT)
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    proc.wait(timeout=60)
    return out.decode()


def test_bar_shows_done_over_planned_with_artifact_and_logs_above_it():
    out = on_terminal("import logging, time\n"
                      "from localbench.config.params import setup_logging\n"
                      "from localbench.measure.progress import Progress\n"
                      "setup_logging()\n"
                      "p = Progress('measure@llamacpp', 4); p.at('gguf/Q4_K_M server')\n"
                      "p.advance(); logging.getLogger('x').info('a log line'); p.advance(3); p.close()\n")
    assert "measure@llamacpp" in out and "4/4" in out and "gguf/Q4_K_M server" in out
    assert "a log line" in out


def test_summary_line_per_artifact():
    rows = [{"status": "ok", "decode_tps": 10.0, "ttft_s": 0.1, "error": None},
            {"status": "ok", "decode_tps": 20.0, "ttft_s": 0.3, "error": None},
            {"status": "timeout", "decode_tps": None, "ttft_s": None, "error": "TimeoutError: request exceeded"}]
    assert summary("llamacpp/server gguf Q4_K_M", rows, 12.4) == (
        "llamacpp/server gguf Q4_K_M: 3 requests in 12 s (2 ok, 1 timeout); decode 15.0 tok/s; TTFT p50 200 ms; "
        "first failure: TimeoutError: request exceeded")


def test_http_request_lines_are_quiet():
    setup_logging()
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
