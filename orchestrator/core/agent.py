"""The node agent as the controller sees it: the zipapp `lab deploy` installs on a node, where it is, its
command lines, and its verbs: a request of agent/contract.py sent, its answer parsed into the contract's
type. The only code that builds agent calls; pipeline, layers and verify all use it.

The protocol is checked once per connection, by `lab deploy`: the node's facts hold agent.pyz's digest,
and an agent that differs from this controller's (another protocol among them) is replaced before any
verb is sent. Commands that do not deploy (apply, the controller, verify) meet an agent that speaks
another protocol as one NodeError asking for `lab deploy`: the agent refuses the request unread."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

from typing import Optional, TypeVar, Union

from orchestrator.agent.contract import AGENT_FILE, PROTOCOL, REFUSED, Answer, ContractError, Request, agent_path
from orchestrator.core.errors import LabError
from orchestrator.core.model import Node
from orchestrator.core.script import cmd, pipe, through_if_present
from orchestrator.core.transport import CommandKilled, NodeError, Transport

A = TypeVar("A", bound=Answer)


PACKAGE = "labagent"  # the agent package's name inside the zipapp
ENTRY = f"import sys\nfrom {PACKAGE}.main import main\nsys.exit(main())\n"


@lru_cache(maxsize=1)
def agent_zipapp() -> bytes:
    """The agent package as one zipapp. Built the same way every time (sorted names, fixed timestamps), so
    its digest changes only when the code does and `lab deploy` reinstalls it only then."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        def add(name: str, text: str) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, text)
        add("__main__.py", ENTRY)
        package = resources.files("orchestrator.agent")
        for name in sorted(p.name for p in package.iterdir() if p.name.endswith(".py") and p.name != "__main__.py"):
            add(f"{PACKAGE}/{name}", package.joinpath(name).read_text())
    return buffer.getvalue()


def agent_files() -> dict[str, tuple[bytes, str, str]]:
    """What the lab installs in its folder on every node: relative path -> (content, sha256, mode)."""
    data = agent_zipapp()
    return {AGENT_FILE: (data, hashlib.sha256(data).hexdigest(), "0755")}


def agent_argv(lab: str, *args: str) -> list[str]:
    """The agent's command line on a node, e.g. agent_argv("demo", "cni", "CHECK", ...): it names the
    protocol, so that an agent speaking another one refuses (an agent from before protocols has no
    --protocol option and refuses too)."""
    return ["python3", agent_path(lab), "--protocol", str(PROTOCOL), *args]


def supervised_argv(lab: str, command: list[str]) -> list[str]:
    """`command` on a node, ended when the SSH session that runs it goes (Ctrl-C on `lab exec`): supervised by the
    lab's agent where the node has it (after `lab deploy`), else run as it is (a node not deployed yet)."""
    return ["sh", "-c", through_if_present(agent_path(lab), agent_argv(lab, "session", "--")), "sh", *command]


def agent_command(lab: str, request: Request[Answer]) -> str:
    """`request` sent to the agent in a shell script: its JSON piped into the agent's command line."""
    return pipe(cmd("printf", "%s", request.to_json()), cmd(*agent_argv(lab, request.VERB)))


def parse_answer(request: Request[A], code: int, stdout: str, stderr: str) -> A:
    """The agent's answer to `request` as the contract's type; a refusal, a failure or an answer that is
    not the contract's raises a LabError of one line."""
    if code == REFUSED or (code == 2 and "--protocol" in stderr):  # an agent without --protocol: from before them
        raise LabError(f"its node agent does not speak protocol {PROTOCOL}: `lab deploy` installs the lab's agent")
    try:
        reply = request.answer(stdout)
    except ContractError as exc:
        last = (stderr.strip() or stdout.strip() or "no output").splitlines()[-1]
        raise LabError(f"{request.VERB}: exited {code}: {last}" if code else f"{request.VERB}: {exc}") from None
    if reply.failed or code:
        raise LabError(reply.msg or f"{request.VERB}: exited {code}")
    return reply


def call(transport: Transport, node: Union[str, Node], lab: str, request: Request[A], prefix: tuple[str, ...] = (),
         timeout: Optional[float] = None) -> A:
    """Send `request` to the agent of lab `lab` on `node` (run under `prefix`, e.g. `ip netns exec POD`); its
    answer, or a NodeError naming the node."""
    result = transport.run(node, [*prefix, *agent_argv(lab, request.VERB)], stdin=request.to_json(), check=False,
                           timeout=timeout)
    if result.killed and not result.stdout.strip():
        raise CommandKilled(result.node, f"{request.VERB}: the node's agent was ended by a signal before it answered")
    try:
        return parse_answer(request, result.exit_code, result.stdout, result.stderr)
    except LabError as exc:
        raise NodeError(result.node, str(exc)) from None


def local_agent_argv(*args: str) -> list[str]:
    """The agent run on this machine from the source tree (the lab's outside host serves and probes with it)."""
    source = str(Path(__file__).resolve().parents[2])
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {source!r}); "
            "from orchestrator.agent.main import main; sys.exit(main())", "--protocol", str(PROTOCOL), *args]


def call_local(request: Request[A], prefix: tuple[str, ...] = ()) -> A:
    """Send `request` to the agent run on this machine (under `prefix`)."""
    proc = subprocess.run([*prefix, *local_agent_argv(request.VERB)], input=request.to_json(), capture_output=True,
                          text=True)
    return parse_answer(request, proc.returncode, proc.stdout, proc.stderr)
