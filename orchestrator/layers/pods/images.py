"""What a pod's image gives the commands run in the pod (`lab exec`, `lab run -- CMD`): the file system they
see (pure).

The lab runs no container images: every pod's process is the lab's own (the built-in server, dnsmasq or
nginx). The image chooses the root the pod's commands see, so that the tools a student reaches for are
there: busybox's applets (from the node's busybox, Debian's busybox-static) for the busybox-based images,
plus the node's own binaries of the tools an image is known for (curl for curlimages/curl), and the node's nc
(netcat-openbsd) in place of Debian's busybox nc, which lacks the -z students scan ports with; for every
other image the node's own file system with the node's tools (dig, nslookup, nc, curl, ip), as in a
tool image like nicolaka/netshoot. docs/kubectl.md lists what each image gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


BUSYBOX = "busybox"  # a root of busybox's applets, made for the pod in its own mount namespace
NODE = "node"  # the node's own file system, with the pod's /etc/resolv.conf, /etc/hosts and /etc/hostname


@dataclass(frozen=True)
class ImageRoot:
    """The root a pod's commands see: its `base`, and node binaries (`tools`) added to a busybox root."""

    base: str
    tools: tuple[str, ...] = ()

    def to_agent(self) -> dict[str, Any]:
        return {"base": self.base, "tools": list(self.tools)}

    def describe(self) -> str:
        if self.base == NODE:
            return "the node's file system and tools"
        return "busybox's applets" + "".join(f", the node's {tool}" for tool in self.tools)


# Image repositories (no registry, tag or digest) -> what their commands see. Alpine's tools are busybox's.
IMAGE_ROOTS = {
    "busybox": ImageRoot(BUSYBOX, ("nc",)),
    "alpine": ImageRoot(BUSYBOX, ("nc",)),
    "curlimages/curl": ImageRoot(BUSYBOX, ("nc", "curl")),
    "radial/busyboxplus": ImageRoot(BUSYBOX, ("nc", "curl")),  # `radial/busyboxplus:curl`, of older Kubernetes docs
}
NODE_ROOT = ImageRoot(NODE)


def repository(image: str) -> str:
    """`image`'s repository, as Docker names it: without registry host, tag and digest, and without the
    `library/` of Docker Hub's official images (`docker.io/library/busybox:1.36` -> `busybox`)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    if ":" in name[slash + 1:]:
        name = name[:name.rfind(":")]
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if len(parts) > 1 and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts).lower()


def image_root(image: str) -> ImageRoot:
    """The root the commands of a pod of `image` see."""
    return IMAGE_ROOTS.get(repository(image), NODE_ROOT)
