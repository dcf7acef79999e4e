"""Small facts about this machine: whether a process lives, which boot this is; and atomic file writes."""

from __future__ import annotations

import os


def alive(pid) -> bool:
    try:
        with open(f"/proc/{int(pid)}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ValueError, IndexError, TypeError):
        return False


def boot_id() -> str:
    """This boot of the node: rules loaded before a reboot are gone, whatever the state file says."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def write_atomically(path: str, text, mode: int = 0o644) -> None:
    """The agent's one durable write: a temporary file, fsynced, renamed over `path`, then the folder fsynced,
    so that after a power cut `path` holds the old text or the new one, never an empty file (seen on ext4)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as handle:
            handle.write(text.encode() if isinstance(text, str) else text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
