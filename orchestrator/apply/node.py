"""What a node has: hostname, kernel, CNI plugin binaries. One SSH command per node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..model import Node
from ..transport import Transport

CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
CNI_DIRS = ("/opt/cni/bin", "/usr/lib/cni")

# Prints the hostname, the kernel release, then `plugin=path` for each CNI plugin found.
PROBE_SCRIPT = (
    "hostname; uname -r; "
    f"for p in {' '.join(CNI_PLUGINS)}; do for d in {' '.join(CNI_DIRS)}; do "
    'if [ -x "$d/$p" ]; then echo "$p=$d/$p"; break; fi; done; done'
)


@dataclass(frozen=True)
class NodeFacts:
    hostname: str
    kernel: str
    cni_plugins: dict = field(default_factory=dict)  # plugin name -> path

    @property
    def missing_plugins(self) -> list[str]:
        return [p for p in CNI_PLUGINS if p not in self.cni_plugins]

    @property
    def cni_dir(self) -> Optional[str]:
        """The folder the plugins were found in (the first one's), for CNI_PATH."""
        paths = [path.rsplit("/", 1)[0] for path in self.cni_plugins.values()]
        return paths[0] if paths else None


def parse_facts(text: str) -> NodeFacts:
    """Parse PROBE_SCRIPT's output."""
    lines = text.splitlines()
    plugins = dict(line.split("=", 1) for line in lines[2:] if "=" in line)
    return NodeFacts(hostname=lines[0] if lines else "", kernel=lines[1] if len(lines) > 1 else "",
                     cni_plugins=plugins)


def probe(transport: Transport, node: Node) -> NodeFacts:
    """Facts of `node`, over SSH."""
    return parse_facts(transport.script(node, PROBE_SCRIPT, timeout=node.ssh.connect_timeout + 10).stdout)
