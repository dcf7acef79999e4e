"""`lab bootstrap`: facts -> missing packages per package manager (pure), and the thin layer that runs it."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from orchestrator.core.model import Cluster, Emulated, Inventory, Node, Ssh
from orchestrator.core.transport import Result, Transport
from orchestrator.layers.nodes import bootstrap as bootstrap_mod
from orchestrator.layers.nodes import packages
from orchestrator.layers.nodes.facts import KERNEL_FEATURES, NodeState, OTHER_TOOLS, REQUIRED_TOOLS, parse_facts


ALL_TOOLS = frozenset(REQUIRED_TOOLS + OTHER_TOOLS + tuple(f"kernel:{m}" for m in KERNEL_FEATURES))
ALL_PLUGINS = {p: f"/usr/lib/cni/{p}" for p in ("bridge", "host-local", "portmap", "loopback")}
COMPLETE = NodeState(tools=ALL_TOOLS, cni_plugins=ALL_PLUGINS, package_managers=("apt-get",),
                     os="Debian GNU/Linux 12 (bookworm)")
CLUSTER = Cluster(name="demo")


def lacking(*names: str, managers=("apt-get",), plugins=ALL_PLUGINS) -> NodeState:
    return replace(COMPLETE, tools=ALL_TOOLS - set(names), package_managers=managers, cni_plugins=plugins)


def test_a_complete_node_needs_nothing():
    plan = packages.plan(COMPLETE, CLUSTER)
    assert plan.nothing_to_install and plan.packages == () and plan.commands == () and plan.manager == "apt"


@pytest.mark.parametrize("missing, apt, dnf", [
    (("ip",), "iproute2", "iproute"),
    (("bridge",), "iproute2", "iproute"),
    (("iptables-save", "iptables-restore"), "iptables", "iptables-nft"),
    (("python3",), "python3", "python3"),
    (("conntrack",), "conntrack", "conntrack-tools"),
    (("dnsmasq",), "dnsmasq-base", "dnsmasq"),
])
def test_each_missing_command_maps_to_its_package_per_manager(missing, apt, dnf):
    assert packages.plan(lacking(*missing), CLUSTER).packages == (apt,)
    assert packages.plan(lacking(*missing, managers=("dnf",)), CLUSTER).packages == (dnf,)


def test_missing_cni_plugins_are_one_package_for_both_managers():
    for manager in ("apt-get", "dnf"):
        plan = packages.plan(lacking(managers=(manager,), plugins={"loopback": "/usr/lib/cni/loopback"}), CLUSTER)
        assert plan.packages == ("containernetworking-plugins",)
        assert plan.lacks == ("CNI plugin bridge", "CNI plugin host-local", "CNI plugin portmap")


def test_nft_is_needed_whatever_the_proxy_mode_for_networkpolicy():
    assert packages.plan(lacking("nft"), CLUSTER).packages == ("nftables",)
    assert packages.plan(lacking("nft"), replace(CLUSTER, proxy_mode="nftables")).packages == ("nftables",)


def test_packages_are_sorted_and_each_named_once():
    plan = packages.plan(lacking("ip", "bridge", "dnsmasq", "conntrack", plugins={}), CLUSTER)
    assert plan.packages == ("conntrack", "containernetworking-plugins", "dnsmasq-base", "iproute2")


def test_apt_installs_without_questions_after_an_update():
    plan = packages.plan(lacking("conntrack", "dnsmasq"), CLUSTER)
    assert [list(argv) for argv in plan.commands] == [
        ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y", "-o", "Dpkg::Use-Pty=0", "update"],
        ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y", "-o", "Dpkg::Use-Pty=0", "install",
         "--no-install-recommends", "conntrack", "dnsmasq-base"]]


def test_dnf_installs_without_questions():
    plan = packages.plan(lacking("conntrack", managers=("dnf",)), CLUSTER)
    assert plan.manager == "dnf"
    assert [list(argv) for argv in plan.commands] == [
        ["dnf", "install", "-y", "-q", "--setopt=install_weak_deps=False", "conntrack-tools"]]


def test_apt_is_preferred_when_a_node_has_both():
    assert packages.plan(lacking("ip", managers=("apt-get", "dnf")), CLUSTER).manager == "apt"


def test_an_unknown_package_manager_is_an_error_only_when_something_is_missing():
    assert packages.plan(replace(COMPLETE, package_managers=()), CLUSTER).nothing_to_install
    plan = packages.plan(replace(lacking("conntrack"), package_managers=(), os="Alpine Linux v3.19"), CLUSTER)
    assert plan.packages == () and not plan.nothing_to_install
    assert plan.error == ("lacks conntrack (command) and has no package manager lab bootstrap knows (Alpine Linux "
                          "v3.19): it needs apt-get (Debian/Ubuntu) or dnf (Fedora/RHEL); install them by hand")


def test_kernel_features_are_reported_not_installed():
    plan = packages.plan(replace(COMPLETE, tools=ALL_TOOLS - {"kernel:vxlan"}), CLUSTER)
    assert plan.nothing_to_install and plan.not_packaged == ("kernel vxlan support",)


def test_the_facts_script_output_carries_the_package_manager_and_os():
    text = "\n### tools\nip\ndnsmasq\n\n### packaging\napt-get\n\n### os\nDebian GNU/Linux 12 (bookworm)\n"
    state = parse_facts(text)
    assert state.package_managers == ("apt-get",) and state.os == "Debian GNU/Linux 12 (bookworm)"
    assert "dnsmasq" in state.tools


# ---- the thin side of it: a fake transport that answers the facts script -------------------------------


def facts_text(state: NodeState) -> str:
    cni = "\n".join(f"{p}={path}" for p, path in state.cni_plugins.items())
    return ("\n### tools\n" + "\n".join(sorted(state.tools)) + f"\n\n### cni\n{cni}\n\n### packaging\n" +
            "\n".join(state.package_managers) + f"\n\n### os\n{state.os}\n")


class FakeTransport(Transport):
    """Answers the facts script with `states` (one per read, the last repeated) and records other commands."""

    def __init__(self, nodes, states: dict[str, list[NodeState]]):
        super().__init__(nodes)
        self.states, self.ran = states, []

    def run(self, node, argv, **kwargs) -> Result:
        node = self.nodes[node] if isinstance(node, str) else node
        if list(argv[:2]) == ["sh", "-ec"]:
            queue = self.states[node.name]
            state = queue.pop(0) if len(queue) > 1 else queue[0]
            return Result(node.name, "facts", 0, facts_text(state), "")
        self.ran.append((node.name, self.command_line(node, argv)))
        return Result(node.name, self.command_line(node, argv), 0, "", "")


def inventory(emulated=None, **ssh) -> Inventory:
    nodes = tuple(Node(f"n{i}", IPv4Address(f"10.0.0.{i}"), f"10.0.0.{i}", Ssh(**ssh)) for i in (1, 2))
    return Inventory("inv.yaml", CLUSTER, nodes, emulated)


def test_bootstrap_installs_with_sudo_and_checks_again():
    inv = inventory(user="vagrant", become=True)
    t = FakeTransport(inv.nodes, {"n1": [COMPLETE], "n2": [lacking("conntrack"), COMPLETE]})
    reports = bootstrap_mod.bootstrap(inv, t)
    assert [(r.node, r.status, r.packages) for r in reports] == [
        ("n1", "nothing to install", ()), ("n2", "installed", ("conntrack",))]
    assert [line for node, line in t.ran] == [
        "sudo -n -- env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0 update",
        "sudo -n -- env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0 install "
        "--no-install-recommends conntrack"]
    assert bootstrap_mod.report_lines(reports) == ["n1: nothing to install", "n2: installed (apt): conntrack"]


def test_dry_run_shows_the_commands_and_runs_none():
    inv = inventory()
    t = FakeTransport(inv.nodes, {"n1": [COMPLETE], "n2": [lacking("dnsmasq", managers=("dnf",))]})
    reports = bootstrap_mod.bootstrap(inv, t, dry_run=True)
    assert t.ran == []
    assert bootstrap_mod.report_lines(reports) == [
        "n1: nothing to install", "n2: would install (dnf): dnsmasq",
        "  dnf install -y -q --setopt=install_weak_deps=False dnsmasq"]


def test_a_node_still_lacking_after_the_install_fails_by_name():
    inv = inventory()
    t = FakeTransport(inv.nodes, {"n1": [COMPLETE], "n2": [lacking("conntrack")]})
    reports = bootstrap_mod.bootstrap(inv, t)
    assert reports[1].status == "failed"
    assert reports[1].error == "n2: installed conntrack, but it still lacks conntrack (command)"


def test_unknown_package_manager_and_emulated_nodes_fail_by_name_and_install_nothing():
    inv = inventory(emulated=Emulated(nodes=2))
    t = FakeTransport(inv.nodes, {"n1": [lacking("ip", managers=())], "n2": [lacking("ip")]})
    reports = bootstrap_mod.bootstrap(inv, t)
    assert t.ran == []
    assert reports[0].error.startswith("n1: lacks ip (command) and has no package manager lab bootstrap knows")
    assert reports[1].error.startswith("n2: lacks ip (command), but it is an emulated node running this machine's "
                                       "programs: install iproute2 on this machine")


def test_every_command_bootstrap_installs_is_one_the_node_facts_read():
    """A need whose command the facts script never looks for would be reported missing on every node."""
    from orchestrator.layers.nodes.read import facts_script
    script = facts_script("demo")
    needed = {n.tool for n in packages.needs(Cluster(name="demo", proxy_mode="nftables")) if n.tool}
    looked_for = next(line for line in script.splitlines() if line.startswith("for t in ")).split(";")[0].split()[3:]
    assert needed <= set(looked_for)
    assert "for m in vxlan bridge; do" in script
