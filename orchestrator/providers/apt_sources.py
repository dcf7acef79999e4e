"""Which Debian mirror this machine's apt uses, for building VM images: the one-line and deb822 sources
files parsed, and the first enabled source of Debian's "main".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from orchestrator.core.errors import LabError


# Debian's release names and aliases: how a Debian source is told from another vendor's "main".
DEBIAN_SUITES = frozenset({
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable",
})
URI_SCHEMES = ("http://", "https://", "ftp://", "file:")  # what debootstrap can fetch from


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
