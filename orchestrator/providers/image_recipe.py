"""What goes into a VM image, as data (providers/image.py builds it): the recipe and its key, the packages,
the guest files and units, and the command lines of the build (debootstrap, chroot, mkfs.ext4) and of
the seed disk's tree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from orchestrator.core.errors import LabError


BUILD_VERSION = "2"  # bump when the build steps (providers/image.py) change what an image holds
ROOT_LABEL = "labroot"
IMAGE_HOSTNAME = "lab-vm"  # until the seed's /etc/hostname is copied in

# What a lab node needs (the same tools the emulated nodes use), plus what makes a bootable system.
NODE_PACKAGES = (
    "systemd-sysv", "udev", "kmod", "openssh-server", "iproute2", "iptables", "nftables",
    "containernetworking-plugins", "conntrack", "dnsmasq-base", "python3", "iputils-ping", "curl",
    "procps", "e2fsprogs", "sudo", "initramfs-tools", "nginx-light", "busybox-static", "netcat-openbsd",
    "bind9-dnsutils",
)

# templates/qemu/<name> -> (path in the guest, mode)
GUEST_TEMPLATES = {
    "cluster-lab-seed.service": ("/etc/systemd/system/cluster-lab-seed.service", 0o644),
    "cluster-lab-seed.sh": ("/usr/local/sbin/cluster-lab-seed", 0o755),
    "sshd_config.conf": ("/etc/ssh/sshd_config.d/cluster-lab.conf", 0o644),
    "wait-online.conf": ("/etc/systemd/system/systemd-networkd-wait-online.service.d/cluster-lab.conf", 0o644),
    "fstab": ("/etc/fstab", 0o644),
    "initramfs.conf": ("/etc/initramfs-tools/conf.d/cluster-lab.conf", 0o644),
    "initramfs-modules": ("/etc/initramfs-tools/modules", 0o644),
}

ENABLED_UNITS = ("systemd-networkd.service", "ssh.service", "cluster-lab-seed.service")
# Timers and jobs that only cost boot time (or CPU later) on a short-lived lab VM; masking a unit
# that is not installed is harmless, so the list does not depend on what debootstrap pulled in.
MASKED_UNITS = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service", "apt-daily-upgrade.service",
    "man-db.timer", "man-db.service", "e2scrub_all.timer", "e2scrub_all.service", "e2scrub_reap.service",
    "fstrim.timer", "fstrim.service", "dpkg-db-backup.timer", "dpkg-db-backup.service",
    "systemd-timesyncd.service", "systemd-firstboot.service", "logrotate.timer", "cron.service",
    "networking.service", "NetworkManager.service", "systemd-resolved.service",
    # no screen (qemu -nodefaults): the serial getty on ttyS0 is the console
    "getty@tty1.service", "getty-static.service",
    "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
    # the lab runs nginx in its gateway pods only, not as the machine's web server
    "nginx.service",
)


@dataclass(frozen=True)
class ImageRecipe:
    """What goes into an image; `key()` names the image built from it."""

    suite: str = "bookworm"
    arch: str = "amd64"
    kernel_package: str = "linux-image-cloud-amd64"
    packages: tuple[str, ...] = NODE_PACKAGES
    size_mib: int = 2048

    def key(self) -> str:
        """16 hex chars over every field, the text of every file under templates/qemu/ and BUILD_VERSION."""
        return recipe_key(self, guest_templates())


def recipe_key(recipe: ImageRecipe, templates: dict[str, str]) -> str:
    """The image key for `recipe` built with the guest files `templates` (name -> text)."""
    digest = hashlib.sha256()
    payload = {"build_version": BUILD_VERSION, "recipe": asdict(recipe), "templates": dict(sorted(templates.items()))}
    digest.update(json.dumps(payload, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def guest_templates() -> dict[str, str]:
    """Name -> text of every file under templates/qemu/."""
    folder = resources.files("orchestrator.templates").joinpath("qemu")
    texts: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        for entry in node.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, f"{name}/")
            elif entry.is_file():
                texts[name] = entry.read_text()

    walk(folder, "")
    return texts


# ---- the build, as data ----

def debootstrap_argv(recipe: ImageRecipe, mirror: str, target: Path) -> list[str]:
    """The debootstrap command that makes the image's root tree in `target`, kernel included."""
    include = ",".join(dict.fromkeys((*recipe.packages, recipe.kernel_package)))
    return ["debootstrap", "--variant=minbase", f"--arch={recipe.arch}", "--components=main",
            f"--include={include}", recipe.suite, str(target), mirror]


def guest_files(templates: dict[str, str]) -> dict[str, tuple[str, int]]:
    """Guest path -> (text, mode) of the files the build writes into the tree, besides the packages'."""
    files = {path: (templates[name], mode) for name, (path, mode) in GUEST_TEMPLATES.items()}
    files.update({
        "/etc/hostname": (f"{IMAGE_HOSTNAME}\n", 0o644),
        "/etc/hosts": ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644),
        "/etc/resolv.conf": ("", 0o644),  # debootstrap copied this machine's; the lab has no DNS outside
        "/etc/apt/sources.list": ("", 0o644),  # nothing outside the lab to install from
        "/etc/machine-id": ("", 0o444),  # empty: each VM makes its own at its first boot
        "/etc/default/locale": ("", 0o644),  # minbase has no locales; pam_env complains at each login without it
    })
    return files


def removed_paths() -> list[str]:
    """Guest globs the build deletes: host keys (each VM gets the lab's own), package caches, logs."""
    return ["/etc/ssh/ssh_host_*", "/etc/apt/sources.list.d/*", "/var/lib/apt/lists/*",
            "/var/cache/apt/*.bin", "/var/lib/dbus/machine-id",
            "/var/log/*.log", "/var/log/apt/*", "/var/cache/debconf/*-old"]


def chroot_argvs(tree: Path) -> list[list[str]]:
    """The commands run in the tree once the guest files are in: units enabled and masked, initrd remade."""
    return [["chroot", str(tree), "systemctl", "enable", "--quiet", *ENABLED_UNITS],
            ["chroot", str(tree), "systemctl", "mask", "--quiet", *MASKED_UNITS],
            ["chroot", str(tree), "update-initramfs", "-u", "-k", "all"]]


def mkfs_argv(tree: Path, disk: Path, size_mib: int, label: str = ROOT_LABEL) -> list[str]:
    """mkfs.ext4 that makes `disk` (size_mib) from the contents of `tree`, owners and modes kept."""
    return ["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), str(disk), f"{size_mib}M"]


def seed_tree(files: Mapping[str, tuple[str | bytes, int]]) -> dict[str, tuple[bytes, int]]:
    """Path inside the seed file system -> (bytes, mode) for guest files; checks the guest paths."""
    tree = {}
    for guest_path, (content, mode) in files.items():
        path = PurePosixPath(guest_path)
        if not path.is_absolute() or ".." in path.parts or path == PurePosixPath("/"):
            raise LabError(f"seed file {guest_path!r}: not an absolute path to a file in the guest; "
                           "give paths like /etc/hostname")
        data = content.encode() if isinstance(content, str) else bytes(content)
        tree["files" + str(path)] = (data, mode)
    return tree


def seed_size_mib(tree: dict[str, tuple[bytes, int]]) -> int:
    """Enough MiB for `tree` in a small ext4 (1 KiB blocks, an inode and a block of slack per file)."""
    needed = sum(len(data) + 2048 for data, _ in tree.values())
    return max(4, -(-needed * 2 // (1 << 20)))
