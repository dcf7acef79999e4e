"""VM images: the recipe's key, the build's command lines, apt sources parsing, seed disks and the cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from orchestrator.core.errors import LabError
from orchestrator.providers import apt_sources, image, image_recipe
from orchestrator.providers.image_recipe import ImageRecipe


MIRROR = "http://mirror.example/debian"  # RFC 2606 name: never a real mirror


def debugfs(disk: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(disk)], capture_output=True, text=True, check=True).stdout


# ---- the key ----

def test_the_key_is_16_hex_chars_and_stable():
    recipe = image.default_recipe()
    assert len(recipe.key()) == 16 and int(recipe.key(), 16) >= 0
    assert recipe.key() == ImageRecipe().key() == image.default_recipe().key()


@pytest.mark.parametrize("change", [
    {"suite": "trixie"}, {"arch": "arm64"}, {"kernel_package": "linux-image-amd64"},
    {"packages": image_recipe.NODE_PACKAGES + ("tcpdump",)}, {"packages": image_recipe.NODE_PACKAGES[:-1]},
    {"size_mib": 4096},
])
def test_every_recipe_field_changes_the_key(change):
    recipe = image.default_recipe()
    assert dataclasses.replace(recipe, **change).key() != recipe.key()


def test_a_guest_files_text_and_the_build_version_change_the_key(monkeypatch):
    recipe = image.default_recipe()
    templates = image_recipe.guest_templates()
    key = image_recipe.recipe_key(recipe, templates)
    assert image_recipe.recipe_key(recipe, dict(templates)) == key
    edited = dict(templates, **{"fstab": templates["fstab"] + "# one more line\n"})
    assert image_recipe.recipe_key(recipe, edited) != key
    assert image_recipe.recipe_key(recipe, dict(templates, **{"extra.conf": ""})) != key
    monkeypatch.setattr(image_recipe, "BUILD_VERSION", image_recipe.BUILD_VERSION + "x")
    assert image_recipe.recipe_key(recipe, templates) != key


def test_recipe_key_reads_the_files_under_templates_vm():
    templates = image_recipe.guest_templates()
    assert set(templates) == set(image_recipe.GUEST_TEMPLATES), \
        "every file under templates/qemu/ is installed somewhere"
    assert image.default_recipe().key() == image_recipe.recipe_key(image.default_recipe(), templates)


# ---- what the build runs ----

def test_debootstrap_gets_minbase_the_packages_the_kernel_and_the_mirror(tmp_path):
    recipe = image.default_recipe()
    argv = image_recipe.debootstrap_argv(recipe, MIRROR, tmp_path / "tree")
    assert argv[0] == "debootstrap" and "--variant=minbase" in argv and "--arch=amd64" in argv
    assert argv[-3:] == ["bookworm", str(tmp_path / "tree"), MIRROR]
    include = next(a for a in argv if a.startswith("--include=")).split("=", 1)[1].split(",")
    assert set(include) == {*recipe.packages, recipe.kernel_package}
    for needed in ("systemd-sysv", "openssh-server", "containernetworking-plugins", "initramfs-tools",
                   "linux-image-cloud-amd64", "nftables", "python3"):
        assert needed in include


def test_mkfs_keeps_the_tree_and_labels_the_root(tmp_path):
    argv = image_recipe.mkfs_argv(tmp_path / "tree", tmp_path / "disk.img", 2048)
    assert argv == ["mkfs.ext4", "-q", "-F", "-L", "labroot", "-d", str(tmp_path / "tree"),
                    str(tmp_path / "disk.img"), "2048M"]


def test_the_guest_gets_the_lab_units_and_no_host_keys_or_apt_sources(tmp_path):
    files = image_recipe.guest_files(image_recipe.guest_templates())
    assert files["/etc/fstab"][0].splitlines()[-1] == "/dev/vda / ext4 defaults 0 1"
    assert files["/etc/apt/sources.list"] == ("", 0o644)
    assert files["/usr/local/sbin/cluster-lab-seed"][1] == 0o755
    assert "PermitRootLogin prohibit-password" in files["/etc/ssh/sshd_config.d/cluster-lab.conf"][0]
    assert "/etc/ssh/ssh_host_*" in image_recipe.removed_paths()
    enable, mask, initrd = image_recipe.chroot_argvs(tmp_path)
    assert enable[:3] == ["chroot", str(tmp_path), "systemctl"]
    assert initrd == ["chroot", str(tmp_path), "update-initramfs", "-u", "-k", "all"]
    assert files["/etc/initramfs-tools/conf.d/cluster-lab.conf"][0].count("MODULES=list") == 1
    assert "virtio_blk" in files["/etc/initramfs-tools/modules"][0].split()
    assert {"systemd-networkd.service", "ssh.service", "cluster-lab-seed.service"} <= set(enable)
    assert {"apt-daily.timer", "man-db.timer", "fstrim.timer", "e2scrub_all.timer",
            "systemd-timesyncd.service"} <= set(mask)


def test_the_seed_unit_runs_before_sshd_and_networkd():
    unit = image_recipe.guest_templates()["cluster-lab-seed.service"]
    befores = " ".join(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("Before="))
    assert {"ssh.service", "systemd-networkd.service"} <= set(befores.split())
    assert "After=local-fs.target" in unit and "ExecStart=/usr/local/sbin/cluster-lab-seed" in unit


def test_mounts_left_in_a_build_tree_are_found_deepest_first(tmp_path):
    build = tmp_path / ".build-0123456789abcdef-x"
    mounts = (f"proc {build}/tree/proc proc rw 0 0\n"
              f"sysfs {build}/tree/proc/sys/fs/binfmt_misc binfmt_misc rw 0 0\n"
              f"tmpfs {build}-other/tree tmpfs rw 0 0\n"
              f"/dev/vda / ext4 rw 0 0\n")
    assert image.mounts_under(build, mounts) == [f"{build}/tree/proc/sys/fs/binfmt_misc", f"{build}/tree/proc"]
    spaced = tmp_path / "a b"
    assert image.mounts_under(spaced, f"proc {tmp_path}/a\\040b/proc proc rw 0 0\n") == [f"{spaced}/proc"]


# ---- apt sources ----

DEB822 = f"""\
Types: deb
# a comment line
URIs: {MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {MIRROR}-security
Suites: bookworm-security
Components: main
"""


def test_deb822_sources_give_the_main_debian_uri():
    sources = apt_sources.parse_deb822_sources(DEB822)
    assert [s.suites for s in sources] == [("bookworm", "bookworm-updates"), ("bookworm-security",)]
    assert apt_sources.debian_main_uri(sources) == MIRROR


def test_security_deb_src_disabled_and_other_vendors_are_skipped():
    text = f"""\
Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://vendor.example/node
Suites: nodistro
Components: main

Enabled: no
Types: deb
URIs: http://off.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: {MIRROR}
Suites: bookworm
Components: main contrib
"""
    assert apt_sources.debian_main_uri(apt_sources.parse_deb822_sources(text)) == MIRROR


def test_one_line_sources_with_options_and_comments():
    text = f"""\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb http://security.example/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/vendor.gpg] http://vendor.example/apt cloud-sdk main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} bookworm main contrib  # trailing
"""
    sources = apt_sources.parse_one_line_sources(text)
    assert sources[-1] == apt_sources.AptSource(("deb",), (MIRROR,), ("bookworm",), ("main", "contrib"))
    assert apt_sources.debian_main_uri(sources) == MIRROR


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_debian_mirror_reads_the_files_apt_reads_in_apt_order(tmp_path, monkeypatch):
    monkeypatch.delenv("LAB_DEBIAN_MIRROR", raising=False)
    write(tmp_path / "etc/apt/sources.list", "")
    write(tmp_path / "etc/apt/sources.list.d/vendor.list.disabled", "deb http://wrong.example/debian bookworm main\n")
    write(tmp_path / "etc/apt/sources.list.d/b.sources", DEB822)
    write(tmp_path / "etc/apt/sources.list.d/a.list", "deb http://first.example/debian bookworm main\n")
    assert apt_sources.debian_mirror(tmp_path) == "http://first.example/debian"
    (tmp_path / "etc/apt/sources.list.d/a.list").unlink()
    assert apt_sources.debian_mirror(tmp_path) == MIRROR
    monkeypatch.setenv("LAB_DEBIAN_MIRROR", "http://override.example/debian")
    assert apt_sources.debian_mirror(tmp_path) == "http://override.example/debian"


def test_no_debian_source_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LAB_DEBIAN_MIRROR", raising=False)
    write(tmp_path / "etc/apt/sources.list", "deb http://vendor.example/ubuntu jammy main\n")
    with pytest.raises(LabError, match="LAB_DEBIAN_MIRROR"):
        apt_sources.debian_mirror(tmp_path)


# ---- the seed disk ----

def test_seed_image_is_an_ext4_labelled_labseed_holding_the_files(tmp_path):
    seed = tmp_path / "vm" / "seed.img"
    image.seed_image(seed, {
        "/etc/hostname": ("node1\n", 0o644),
        "/etc/ssh/ssh_host_ed25519_key": ("PRIVATE\n", 0o600),
        "/root/.ssh/authorized_keys": (b"ssh-ed25519 AAAA lab\n", 0o600),
    })
    assert seed.stat().st_size <= 16 << 20
    header = subprocess.run(["dumpe2fs", "-h", str(seed)], capture_output=True, text=True, check=True).stdout
    assert "Filesystem volume name:   labseed" in header
    assert debugfs(seed, "cat /files/etc/hostname") == "node1\n"
    assert debugfs(seed, "cat /files/root/.ssh/authorized_keys") == "ssh-ed25519 AAAA lab\n"
    key = debugfs(seed, "stat /files/etc/ssh/ssh_host_ed25519_key")
    assert "Mode:  0600" in key
    assert "Mode:  0700" in debugfs(seed, "stat /files/root/.ssh")
    assert list(seed.parent.iterdir()) == [seed], "no temporary files left beside the seed"


def test_seed_image_refuses_paths_outside_the_guest(tmp_path):
    for bad in ("etc/hostname", "/etc/../../x", "/"):
        with pytest.raises(LabError, match="absolute path"):
            image.seed_image(tmp_path / "seed.img", {bad: ("x", 0o644)})


# ---- the cache ----

def fake_image(cache: Path, key: str, parts=("disk.img", "vmlinuz", "initrd.img", "debs/Packages"),
               recipe=True) -> Path:
    folder = cache / key
    folder.mkdir(parents=True)
    for name in parts:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"x" * 5000)
    if recipe:
        (folder / "recipe.json").write_text(json.dumps({"key": key, "suite": "bookworm", "seconds": 1}))
    return folder


def test_cached_images_lists_complete_images_only(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_IMAGE_CACHE", str(tmp_path))
    assert image.image_cache() == tmp_path
    fake_image(tmp_path, "0123456789abcdef")
    fake_image(tmp_path, "fedcba9876543210", recipe=False)  # half built: no recipe.json yet
    fake_image(tmp_path, "1111111111111111", parts=("disk.img",))
    fake_image(tmp_path, ".build-0123456789abcdef-x1y2")
    (tmp_path / ".lock-0123456789abcdef").write_text("")
    images = image.cached_images()
    assert [i.key for i in images] == ["0123456789abcdef"]
    only = images[0]
    assert only.folder == tmp_path / "0123456789abcdef" and only.disk == only.folder / "disk.img"
    assert only.kernel.name == "vmlinuz" and only.initrd.name == "initrd.img"
    assert only.recipe["suite"] == "bookworm" and only.size_bytes >= 3 * 5000


def test_cached_images_of_a_missing_cache_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_IMAGE_CACHE", str(tmp_path / "nothing"))
    assert image.cached_images() == []


def test_remove_image(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_IMAGE_CACHE", str(tmp_path))
    fake_image(tmp_path, "0123456789abcdef")
    assert image.remove_image("0123456789abcdef") is True
    assert not (tmp_path / "0123456789abcdef").exists() and image.cached_images() == []
    assert image.remove_image("0123456789abcdef") is False
    assert image.remove_image("../etc") is False


def test_ensure_image_reuses_a_complete_image_without_building(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_IMAGE_CACHE", str(tmp_path))
    recipe = image.default_recipe()
    fake_image(tmp_path, recipe.key())
    monkeypatch.setattr(image, "_build", lambda *args: pytest.fail("built although the image is cached"))
    assert image.ensure_image(recipe).key == recipe.key()


def test_ensure_image_removes_half_builds_and_rebuilds(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_IMAGE_CACHE", str(tmp_path))
    recipe = image.default_recipe()
    key = recipe.key()
    fake_image(tmp_path, f".build-{key}-old")
    fake_image(tmp_path, key, recipe=False)
    other = fake_image(tmp_path, ".build-0000000000000000-busy")  # another key's build: left alone
    built = []

    def fake_build(recipe_, key_, templates, cache, progress):
        assert not (cache / key_).exists() and not list(cache.glob(f".build-{key_}-*"))
        built.append(key_)
        fake_image(cache, key_)
        return image.cached_images()[0]

    monkeypatch.setattr(image, "_build", fake_build)
    assert image.ensure_image(recipe).key == key and built == [key]
    assert other.exists()


def test_building_needs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_IMAGE_CACHE", str(tmp_path))
    monkeypatch.setattr(image.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        image.ensure_image(image.default_recipe())
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".lock-")] == []


def test_a_cache_that_cannot_be_written_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LAB_IMAGE_CACHE", str(blocker / "images"))  # a folder below a file: never writable
    with pytest.raises(LabError, match="LAB_IMAGE_CACHE"):
        image.ensure_image(image.default_recipe())


def test_the_image_packages_form_a_flat_apt_repository():
    from orchestrator.providers.image import packages_entry, release_text
    data = b"not really a deb"
    entry = packages_entry("Package: conntrack\nVersion: 1:1.4.7-1+b2\nArchitecture: amd64\n", "conntrack_1.deb", data)
    assert entry.splitlines() == [
        "Package: conntrack", "Version: 1:1.4.7-1+b2", "Architecture: amd64", "Filename: ./conntrack_1.deb",
        f"Size: {len(data)}", f"MD5sum: {hashlib.md5(data).hexdigest()}", f"SHA256: {hashlib.sha256(data).hexdigest()}"]
    release = release_text({"Packages": b"abc"}, "Wed, 02 Dec 2026 05:00:00 UTC")
    assert release == ("Date: Wed, 02 Dec 2026 05:00:00 UTC\nSHA256:\n"
                       f" {hashlib.sha256(b'abc').hexdigest()} 3 Packages\n")
