"""Small facts about this machine: whether a process lives, which boot this is."""

from __future__ import annotations



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
