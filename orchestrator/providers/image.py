"""Debian VM images for `lab up --provider qemu`: built offline from Debian's packages with debootstrap, cached.

An image is a folder `<cache>/<key>/` holding `disk.img` (a raw ext4 file system: the whole root, booted
with `root=/dev/vda`), the `vmlinuz` and `initrd.img` it boots with, `build.log` and `recipe.json`
(written last: a folder without it is a half build and never used). The key is a
hash of the recipe and of the guest files under templates/vm/, so a changed recipe makes a new image
and an unchanged one is reused. The image holds nothing of any one VM: no host keys, no address, a
neutral hostname. Each VM gets those from a small "seed" disk (`seed_image`), copied onto / at every
boot by cluster-lab-seed.service, before sshd and systemd-networkd start.

The pure parts (recipe, key, command lines, apt sources parsing, guest files) return data; the side
effects are in `ensure_image` and `seed_image`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from ..errors import LabError

IMAGE_CACHE = "/var/cache/cluster-lab/images"  # $LAB_IMAGE_CACHE overrides
BUILD_VERSION = "2"  # bump when the build steps below change what an image holds
REPO = "debs"  # the image's packages as a flat apt repository: what the lab serves its VMs
SEED_LABEL = "labseed"
ROOT_LABEL = "labroot"
IMAGE_HOSTNAME = "lab-vm"  # until the seed's /etc/hostname is copied in

# What a lab node needs (the same tools the emulated nodes use), plus what makes a bootable system.
NODE_PACKAGES = (
    "systemd-sysv", "udev", "kmod", "openssh-server", "iproute2", "iptables", "nftables",
    "containernetworking-plugins", "conntrack", "dnsmasq-base", "python3", "iputils-ping", "curl",
    "procps", "e2fsprogs", "sudo", "initramfs-tools",
)

# templates/vm/<name> -> (path in the guest, mode)
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
)

# Debian's release names and aliases: how a Debian source is told from another vendor's "main".
DEBIAN_SUITES = frozenset({
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable",
})
URI_SCHEMES = ("http://", "https://", "ftp://", "file:")  # what debootstrap can fetch from

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImageRecipe:
    """What goes into an image; `key()` names the image built from it."""

    suite: str = "bookworm"
    arch: str = "amd64"
    kernel_package: str = "linux-image-cloud-amd64"
    packages: tuple[str, ...] = NODE_PACKAGES
    size_mib: int = 2048

    def key(self) -> str:
        """16 hex chars over every field, the text of every file under templates/vm/ and BUILD_VERSION."""
        return recipe_key(self, guest_templates())


def default_recipe() -> ImageRecipe:
    """The image `lab up --provider qemu` uses unless told otherwise."""
    return ImageRecipe()


def recipe_key(recipe: ImageRecipe, templates: dict[str, str]) -> str:
    """The image key for `recipe` built with the guest files `templates` (name -> text)."""
    digest = hashlib.sha256()
    payload = {"build_version": BUILD_VERSION, "recipe": asdict(recipe), "templates": dict(sorted(templates.items()))}
    digest.update(json.dumps(payload, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def guest_templates() -> dict[str, str]:
    """Name -> text of every file under templates/vm/."""
    folder = resources.files("orchestrator.templates").joinpath("vm")
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


@dataclass(frozen=True)
class CachedImage:
    """A complete image in the cache: boot `kernel` + `initrd` with root=/dev/vda on (an overlay of) `disk`."""

    key: str
    folder: Path
    disk: Path
    kernel: Path
    initrd: Path
    recipe: dict = field(compare=False)
    size_bytes: int = 0

    @property
    def repo(self) -> Path:
        """The packages the image was made of, as a flat apt repository (Packages, Release, *.deb)."""
        return self.folder / REPO


def image_cache() -> Path:
    """The folder holding the images: $LAB_IMAGE_CACHE, else IMAGE_CACHE."""
    return Path(os.environ.get("LAB_IMAGE_CACHE") or IMAGE_CACHE)


# ---- apt sources: which Debian mirror this machine uses ----

@dataclass(frozen=True)
class AptSource:
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    enabled: bool = True


def parse_one_line_sources(text: str) -> list[AptSource]:
    """The entries of a one-line-style `sources.list` (`deb [options] URI SUITE COMPONENT...`)."""
    sources = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        kind, rest = words[0], words[1:]
        if rest and rest[0].startswith("["):  # options, e.g. [arch=amd64 signed-by=/usr/share/keyrings/x.gpg]
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if kind not in ("deb", "deb-src") or len(rest) < 2:
            continue
        sources.append(AptSource((kind,), (rest[0],), (rest[1],), tuple(rest[2:])))
    return sources


def parse_deb822_sources(text: str) -> list[AptSource]:
    """The stanzas of a deb822-style `.sources` file (Types/URIs/Suites/Components/Enabled)."""
    sources = []
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and last:  # a continuation line (e.g. an inline Signed-By key)
                fields[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if sep:
                last = name.strip().lower()
                fields[last] = value.strip()
        if "types" not in fields or "uris" not in fields:
            continue
        sources.append(AptSource(
            tuple(fields["types"].split()), tuple(fields["uris"].split()), tuple(fields.get("suites", "").split()),
            tuple(fields.get("components", "").split()), fields.get("enabled", "yes").lower() not in ("no", "false"),
        ))
    return sources


def debian_main_uri(sources: Iterable[AptSource]) -> str | None:
    """The URI of the first enabled binary source of Debian's "main" that is not a security archive."""
    for source in sources:
        if not source.enabled or "deb" not in source.types or "main" not in source.components:
            continue
        if not any(suite in DEBIAN_SUITES for suite in source.suites):  # also skips -security, -updates
            continue
        for uri in source.uris:
            if uri.startswith(URI_SCHEMES) and not uri.rstrip("/").endswith("-security"):
                return uri
    return None


def apt_source_files(root: Path = Path("/")) -> list[Path]:
    """The files apt reads its sources from, in apt's order."""
    files = [root / "etc/apt/sources.list"]
    folder = root / "etc/apt/sources.list.d"
    if folder.is_dir():
        files += sorted(p for p in folder.iterdir() if p.suffix in (".list", ".sources") and p.is_file())
    return [p for p in files if p.is_file()]


def debian_mirror(root: Path = Path("/")) -> str:
    """The Debian mirror this machine's apt uses ($LAB_DEBIAN_MIRROR overrides)."""
    if os.environ.get("LAB_DEBIAN_MIRROR"):
        return os.environ["LAB_DEBIAN_MIRROR"]
    sources: list[AptSource] = []
    for path in apt_source_files(root):
        text = path.read_text(errors="replace")
        sources += parse_deb822_sources(text) if path.suffix == ".sources" else parse_one_line_sources(text)
    uri = debian_main_uri(sources)
    if uri is None:
        raise LabError(f"no Debian 'main' source in this machine's apt sources ({root / 'etc/apt'}) to build "
                       "the VM image from; set LAB_DEBIAN_MIRROR to the URI of a Debian mirror")
    return uri


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


def seed_tree(files: dict[str, tuple[str | bytes, int]]) -> dict[str, tuple[bytes, int]]:
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


# ---- the cache ----

def _complete(folder: Path) -> CachedImage | None:
    try:
        recipe = json.loads((folder / "recipe.json").read_text())
    except (OSError, ValueError):
        return None
    parts = [folder / name for name in ("disk.img", "vmlinuz", "initrd.img")]
    if not all(p.is_file() for p in parts) or not isinstance(recipe, dict):
        return None
    size = sum(p.lstat().st_blocks * 512 for p in folder.rglob("*"))
    return CachedImage(folder.name, folder, parts[0], parts[1], parts[2], recipe, size)


def _is_key(name: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{16}", name) is not None


def cached_images() -> list[CachedImage]:
    """The complete images in the cache (half-built folders are not images)."""
    cache = image_cache()
    if not cache.is_dir():
        return []
    images = (_complete(p) for p in sorted(cache.iterdir()) if _is_key(p.name) and p.is_dir())
    return [image for image in images if image is not None]


@contextlib.contextmanager
def _key_lock(cache: Path, key: str):
    """Hold `<cache>/.lock-<key>` so that two processes never build or remove the same image at once."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        handle = open(cache / f".lock-{key}", "a")
    except OSError as exc:
        raise LabError(f"cannot write the VM image cache {cache} ({exc.strerror}): run as root, or set "
                       "LAB_IMAGE_CACHE to a folder you can write") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def mounts_under(folder: Path, mounts_text: str) -> list[str]:
    """Mount points at or below `folder` in a /proc/self/mounts text, deepest first."""
    points = []
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) > 1:
            point = fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            if point == str(folder) or point.startswith(f"{folder}/"):
                points.append(point)
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def _remove_build(folder: Path) -> None:
    """Delete a build folder; a debootstrap that was killed can leave /proc mounted in its tree."""
    if not folder.exists():
        return
    for point in mounts_under(folder.resolve(), Path("/proc/self/mounts").read_text()):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    left = mounts_under(folder.resolve(), Path("/proc/self/mounts").read_text())
    if left:
        raise LabError(f"a half-built VM image still has {left[0]} mounted; unmount it (umount -l) "
                       f"and remove {folder}")
    shutil.rmtree(folder, ignore_errors=True)


def _remove_half_builds(cache: Path, key: str) -> None:
    for stale in cache.glob(f".build-{key}-*"):
        _remove_build(stale)


def remove_image(key: str) -> bool:
    """Delete the image `key` from the cache; False when there is no such image."""
    cache = image_cache()
    if not _is_key(key) or not (cache / key).is_dir():
        return False
    with _key_lock(cache, key):
        _remove_half_builds(cache, key)
        if not (cache / key).is_dir():
            return False
        _remove_build(cache / key)
    with contextlib.suppress(FileNotFoundError):
        (cache / f".lock-{key}").unlink()
    return True


def ensure_image(recipe: ImageRecipe, progress: Progress = lambda line: None) -> CachedImage:
    """The cached image for `recipe`, built first (a few minutes, needs root) when it is not there."""
    templates = guest_templates()
    key = recipe_key(recipe, templates)
    cache = image_cache()
    if (image := _complete(cache / key)) is not None:
        return image
    with _key_lock(cache, key):
        if (image := _complete(cache / key)) is not None:  # another `lab up` built it while we waited
            return image
        _remove_half_builds(cache, key)
        if (cache / key).exists():  # an incomplete folder under the final name: never used, rebuilt
            _remove_build(cache / key)
        return _build(recipe, key, templates, cache, progress)


def _check_can_build() -> None:
    if os.geteuid() != 0:
        raise LabError("building the VM image needs root (debootstrap, chroot, mkfs.ext4 -d): run it as root")
    for tool, package in (("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs"), ("chroot", "coreutils"),
                          ("dpkg-deb", "dpkg")):
        if shutil.which(tool) is None:
            raise LabError(f"building the VM image needs {tool}: apt-get install {package}")


def _run(argv: list[str], log: Path, what: str, key: str, env: dict | None = None) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    if result.returncode != 0:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {result.returncode}"
        raise LabError(f"image {key}: {what} failed ({last}); the whole output is in {log}")


def _write_guest_file(tree: Path, guest_path: str, content: str | bytes, mode: int) -> None:
    path = tree / guest_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    os.chmod(path, mode)


def _build(recipe: ImageRecipe, key: str, templates: dict[str, str], cache: Path, progress: Progress) -> CachedImage:
    _check_can_build()
    mirror = debian_mirror()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=cache))
    log = cache / f".build-{key}.log"
    log.write_text("")
    tree = work / "tree"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive",
           "HOME": "/root"}
    try:
        progress(f"image {key}: debootstrap of Debian {recipe.suite} with {recipe.kernel_package} from {mirror} "
                 "(about 1.5 minutes)")
        _run(debootstrap_argv(recipe, mirror, tree), log, "debootstrap", key, env)
        progress(f"image {key}: keeping its packages as the apt repository the lab serves its VMs")
        (work / REPO).mkdir()
        for deb in sorted(tree.glob("var/cache/apt/archives/*.deb")):
            shutil.move(deb, work / REPO / deb.name)
        write_repo_index(work / REPO)

        progress(f"image {key}: configuring the guest (units, sshd, no host keys, no apt sources, a small initrd)")
        for pattern in removed_paths():
            for path in tree.glob(pattern.lstrip("/")):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        for guest_path, (content, mode) in guest_files(templates).items():
            _write_guest_file(tree, guest_path, content, mode)
        # NICs are named eth0, eth1, ... even without net.ifnames=0 (the seed's .network matches eth0)
        (tree / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (tree / "etc/systemd/network/99-default.link").unlink()
        (tree / "etc/systemd/network/99-default.link").symlink_to("/dev/null")
        for argv in chroot_argvs(tree):
            _run(argv, log, " ".join(argv[2:4]), key, env)

        kernels = sorted((tree / "boot").glob("vmlinuz-*"))
        initrds = sorted((tree / "boot").glob("initrd.img-*"))
        if len(kernels) != 1 or len(initrds) != 1:
            raise LabError(f"image {key}: expected one kernel and one initrd in /boot after installing "
                           f"{recipe.kernel_package}, found {len(kernels)} and {len(initrds)}; see {log}")
        shutil.copy2(kernels[0], work / "vmlinuz")
        shutil.copy2(initrds[0], work / "initrd.img")
        # ConditionNeedsUpdate= units (hwdb, ldconfig, catalog) would otherwise run at the first boot
        for stamp in ("etc/.updated", "var/.updated"):
            (tree / stamp).write_text("")

        progress(f"image {key}: making the file system ({recipe.size_mib} MiB, ext4)")
        _run(mkfs_argv(tree, work / "disk.img", recipe.size_mib), log, "mkfs.ext4", key, env)
        _remove_build(tree)

        seconds = round(time.monotonic() - started)
        record = {"key": key, **asdict(recipe), "mirror": mirror, "kernel_version": kernels[0].name[len("vmlinuz-"):],
                  "build_version": BUILD_VERSION, "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "seconds": seconds}
        os.replace(log, work / "build.log")
        (work / "recipe.json").write_text(json.dumps(record, indent=2) + "\n")  # last: marks it complete
        work.chmod(0o755)
        os.rename(work, cache / key)
    except BaseException:
        _remove_build(work)
        raise
    progress(f"image {key}: done in {seconds} s")
    image = _complete(cache / key)
    assert image is not None
    return image


# ---- the packages, as an apt repository ----

def packages_entry(control: str, filename: str, data: bytes) -> str:
    """A Packages stanza: the .deb's control fields, then where it is and its checksums."""
    return (control.rstrip("\n") + f"\nFilename: ./{filename}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\nSHA256: {hashlib.sha256(data).hexdigest()}\n")


def release_text(indexes: dict[str, bytes], date: str) -> str:
    """A flat repository's Release file listing `indexes` (name -> content); apt checks them against it."""
    lines = [f"Date: {date}", "SHA256:"]
    lines += [f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}" for name, data in sorted(indexes.items())]
    return "\n".join(lines) + "\n"


def write_repo_index(folder: Path) -> None:
    """Packages and Release for the .deb files in `folder` (dpkg-deb reads each one's control fields)."""
    stanzas = []
    for deb in sorted(folder.glob("*.deb")):
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
        stanzas.append(packages_entry(control, deb.name, deb.read_bytes()))
    packages = "\n".join(stanzas).encode()
    (folder / "Packages").write_bytes(packages)
    date = datetime.now(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC")
    (folder / "Release").write_text(release_text({"Packages": packages}, date))


# ---- the per-VM seed disk ----

def seed_image(path: Path, files: dict[str, tuple[str | bytes, int]]) -> None:
    """Write a small ext4 image labelled "labseed" holding `files` (guest path -> (content, mode)) under files/."""
    tree = seed_tree(files)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".seed-", dir=path.parent) as work:
        root = Path(work) / "root"
        root.mkdir()
        for rel, (data, mode) in tree.items():
            target = root / rel
            for parent in reversed(target.relative_to(root).parents[:-1]):
                folder = root / parent
                if not folder.is_dir():
                    folder.mkdir()
                    folder.chmod(0o700 if folder.name == ".ssh" else 0o755)  # sshd's StrictModes
            target.write_bytes(data)
            target.chmod(mode)
        image = Path(work) / "seed.img"
        argv = mkfs_argv(root, image, seed_size_mib(tree), SEED_LABEL)
        argv[1:1] = ["-O", "^has_journal", "-E", "root_owner=0:0"]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            problem = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            raise LabError(f"seed disk {path}: mkfs.ext4 failed ({problem}); is e2fsprogs installed?")
        os.replace(image, path)
