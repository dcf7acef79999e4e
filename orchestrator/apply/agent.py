"""The node agent as the controller calls it: where `lab deploy` installs it on a node, and its command
lines. The one place that builds agent calls; deploy, pods, services and verify all use it (so none of
them needs another's module for it)."""

from __future__ import annotations

import hashlib
import shlex

from ..plan.boot import AGENT
from ..plan.network import node_lib
from ..render import resource_text


def agent_path(lab: str) -> str:
    """Where the agent of lab `lab` is on a node."""
    return f"{node_lib(lab)}/{AGENT}"


def agent_files() -> dict[str, tuple[str, str, str]]:
    """What the lab installs in its folder on every node: relative path -> (text, sha256, mode)."""
    text = resource_text("orchestrator", AGENT)
    return {AGENT: (text, hashlib.sha256(text.encode()).hexdigest(), "0755")}


def agent_argv(lab: str, *args: str) -> list[str]:
    """The agent's command line on a node, e.g. agent_argv("demo", "proxy-sync")."""
    return ["python3", agent_path(lab), *args]


def agent_command(lab: str, *args: str) -> str:
    """The same, quoted for a shell script."""
    return shlex.join(agent_argv(lab, *args))
