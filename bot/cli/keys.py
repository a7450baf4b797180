"""Keys for the interactive `faqbot logs review`, one at a time from standard input: in a terminal in cbreak mode (no
Enter needed, restored on exit), from a pipe as they come (``printf '14q' | faqbot logs review``), which is how
scripts and tests drive it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class KeyInput:
    """One key at a time from a stream: a terminal in cbreak mode (restored on exit), or a pipe as it comes."""

    def __init__(self, stream=None, echo=None):
        self.stream = stream or sys.stdin
        self.tty = self.stream.isatty()
        self.echo = echo or sys.stdout

    @contextmanager
    def active(self) -> Iterator[KeyInput]:
        if not self.tty:
            yield self
            return
        import termios
        import tty

        fd = self.stream.fileno()
        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)  # keys without Enter; Ctrl-C still interrupts
            yield self
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    def key(self) -> str:
        """The next key ('' at end of input)."""
        ch = self.stream.read(1)
        while ch == "\n" and not self.tty:  # a pipe may end keys with a newline: not a key
            ch = self.stream.read(1)
        return ch

    def line(self, prompt: str) -> str | None:
        """A line typed after ``prompt`` (echoed in a terminal); None at end of input or on Esc."""
        self.echo.write(prompt)
        self.echo.flush()
        chars: list[str] = []
        ch = self.stream.read(1)
        while ch == "\n" and not self.tty:  # from a pipe, "2\n1\n" and "21\n" both pick candidate 1
            ch = self.stream.read(1)
        while True:
            if ch == "":
                if not self.tty:
                    self.echo.write("".join(chars) + "\n")
                return None if not chars else "".join(chars)
            if ch in ("\n", "\r"):
                self.echo.write(("" if self.tty else "".join(chars)) + "\n")
                return "".join(chars)
            if ch == "\x1b":
                if self.tty:
                    self.echo.write("\n")
                return None
            if ch in ("\x7f", "\b"):
                if chars:
                    chars.pop()
                    if self.tty:
                        self.echo.write("\b \b")
            else:
                chars.append(ch)
                if self.tty:
                    self.echo.write(ch)
            if self.tty:
                self.echo.flush()
            ch = self.stream.read(1)
