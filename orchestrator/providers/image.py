"""Debian VM images for `lab up --provider qemu`: built offline from Debian's packages with debootstrap, cached.

An image is a folder `<cache>/<key>/` holding `disk.img` (a raw ext4 file system: the whole root, booted
with `root=/dev/vda`), the `vmlinuz` and `initrd.img` it boots with, `build.log` and `recipe.json`
(written last: a folder without it is a half build and never used). The key is a
hash of the recipe and of the guest files under templates/qemu/, so a changed recipe makes a new image
and an unchanged one is reused. The image holds nothing of any one VM: no host keys, no address, a
neutral hostname. Each VM gets those from a small "seed" disk (`seed_image`), copied onto / at every
boot by cluster-lab-seed.service, before sshd and systemd-networkd start.

The pure parts (recipe, key, command lines, guest files) are in providers/image_recipe.py and the reading
of this machine's apt sources in providers/apt_sources.py; the side effects are here, in `ensure_image`
(the build and the cache) and `seed_image`.
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
from pathlib import Path
from typing import Callable, Mapping

from orchestrator.core.errors import LabError
from orchestrator.providers.apt_sources import debian_mirror
from orchestrator.providers.image_recipe import (BUILD_VERSION, ImageRecipe, chroot_argvs, debootstrap_argv,
        guest_files, guest_templates, mkfs_argv, recipe_key, removed_paths, seed_size_mib, seed_tree)


IMAGE_CACHE = "/var/cache/cluster-lab/images"  # $LAB_IMAGE_CACHE overrides
REPO = "debs"  # the image's packages as a flat apt repository: what the lab serves its VMs
SEED_LABEL = "labseed"

Progress = Callable[[str], None]


def default_recipe() -> ImageRecipe:
    """The image `lab up --provider qemu` uses unless told otherwise."""
    return ImageRecipe()


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

def seed_image(path: Path, files: Mapping[str, tuple[str | bytes, int]]) -> None:
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
