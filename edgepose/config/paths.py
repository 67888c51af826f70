"""Paths and small files: the checks that keep os calls answering instead of raising,
reading a file that must be small and regular, and the state directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..text import show

# Linux NAME_MAX and PATH_MAX (bytes, PATH_MAX including the NUL).
NAME_MAX = 255
PATH_MAX = 4096


def check_path_text(text: str) -> None:
    """Refuse what would make os calls raise instead of answer: NUL bytes, names over
    NAME_MAX, paths over PATH_MAX, ``~user`` for a user that does not exist."""
    if "\x00" in text:
        raise ValueError("a path cannot contain a NUL byte")
    raw = os.fsencode(text) if encodable(text) else None
    if raw is None:
        raise ValueError(f"not a valid file name: {show(text)}")
    if len(raw) >= PATH_MAX:
        raise ValueError(f"path is {len(raw)} bytes long, at most {PATH_MAX - 1}")
    for part in raw.split(b"/"):
        if len(part) > NAME_MAX:
            raise ValueError(
                f"a path component is {len(part)} bytes long, at most {NAME_MAX}: "
                f"{show(part.decode('utf-8', 'replace'))}"
            )
    if text.startswith("~"):
        try:
            expanded = os.fsencode(str(Path(text).expanduser()))
        except RuntimeError:  # ~nosuchuser, or no home directory at all
            user = text[1:].split("/", 1)[0]
            raise ValueError(
                f"cannot expand {show('~' + user)}: " + (f"no user {show(user)}" if user else "no home directory")
            ) from None
        if len(expanded) >= PATH_MAX:
            raise ValueError(f"path is {len(expanded)} bytes long once ~ is expanded, at most {PATH_MAX - 1}")


def encodable(text: str) -> bool:
    try:
        os.fsencode(text)
    except UnicodeError:  # a lone surrogate
        return False
    return True


def parse_dir(text: str) -> Path:
    check_path_text(text)
    return Path(text).expanduser()


def read_small_file(path: Path, limit: int) -> bytes:
    """A regular file's bytes, refused unread when it is anything else or over `limit`.

    Opened non-blocking, so a FIFO never hangs the caller, and checked with fstat
    on the opened file, so /dev/zero or a swapped-in symlink is never read.
    Raises OSError (cannot open) or ValueError (not a regular file, too big).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file (a device, FIFO or folder is never read)")
        if info.st_size > limit:
            raise ValueError(f"{info.st_size} bytes, at most {limit}")
        chunks, size = [], 0
        while chunk := os.read(fd, limit + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ValueError(f"over {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def show_path(path: Path | str) -> str:
    text = str(path)
    return text if len(text) <= 200 else text[:100] + "..." + text[-60:]


def resolve_state_path(key: str, path: Path, problems: list[str]) -> Path:
    """Relative paths live in systemd's StateDirectory when there is one."""
    if path.is_absolute():
        return path
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    try:
        base = Path(state) if state else Path.cwd()
    except OSError as exc:  # the working directory was removed
        problems.append(f"{key}: relative, but the working directory is gone ({exc.strerror})")
        return path
    full = base / path
    if len(os.fsencode(str(full))) >= PATH_MAX:
        problems.append(f"{key}: {show_path(full)} is over {PATH_MAX - 1} bytes once made absolute")
    return full
