"""Reading a node's state: one SSH command (templates/node-facts.sh.j2), parsed by plan.facts."""

from __future__ import annotations

from ..model import Node
from ..plan.boot import KNOWN_MODULES, etc_files, unit_link
from ..plan.facts import CNI_DIRS, CNI_PLUGINS, KERNEL_FEATURES, OTHER_TOOLS, REQUIRED_TOOLS, NodeState, parse_facts
from ..plan.network import CNI_CONF_DIR, SYSCTLS, conflist_path, node_lib
from ..render import render
from ..transport import Transport


def facts_script(lab: str, vni: int = 1) -> str:
    return render("node-facts.sh.j2", tools=REQUIRED_TOOLS + OTHER_TOOLS, kernel_features=KERNEL_FEATURES,
                  plugins=CNI_PLUGINS, cni_dirs=CNI_DIRS, sysctls=list(SYSCTLS),
                  conf_dir=CNI_CONF_DIR, conflist=conflist_path(lab), lib=node_lib(lab),
                  modules=sorted(KNOWN_MODULES.items()), etc_files=etc_files(lab), unit_link=unit_link(lab))


def read_state(transport: Transport, node: Node, lab: str) -> NodeState:
    """Read `node`'s state over SSH (one command)."""
    return parse_facts(transport.script(node, facts_script(lab)).stdout)
