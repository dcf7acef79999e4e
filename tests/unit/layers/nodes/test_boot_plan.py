"""What a node keeps across a reboot (layers/nodes/boot.py): modules, persisted sysctls, the boot unit and script,
and what destroy removes again; planned against node states as the facts script reads them."""

import hashlib
from dataclasses import replace
from ipaddress import IPv4Network as Net
from pathlib import Path

from orchestrator.core import inventory
from orchestrator.layers.nodes import boot
from orchestrator.layers.nodes.facts import NodeFacts, NodeState, parse_facts
from orchestrator.layers.podnet import changes as diff
from orchestrator.layers.podnet.plan import plan_node


SUBNETS = {"node1": Net("10.244.0.0/24"), "node2": Net("10.244.1.0/24")}
FACTS = {name: NodeFacts("eth0", 1500) for name in SUBNETS}


def lab(backend="vxlan", proxy_mode="iptables"):
    return inventory.parse(f"""
cluster: {{name: demo, overlay: {{backend: {backend}}}, proxy_mode: {proxy_mode}}}
nodes:
  - {{name: node1, address: 198.18.0.11}}
  - {{name: node2, address: 198.18.0.12}}
""", "demo.yaml", Path("."))


def network(inv=None):
    inv = inv or lab()
    return plan_node(inv, inv.node("node1"), SUBNETS, FACTS)


def persisted(net):
    """What the boot files need of the pod network: its sysctls and CNI config."""
    return net.sysctls, net.conflist_path


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def test_modules_follow_the_overlay_and_nf_tables_is_always_needed_for_networkpolicy():
    assert boot.kernel_modules(lab().cluster) == ("br_netfilter", "nf_conntrack", "vxlan", "nf_tables")
    assert boot.kernel_modules(lab("host-gw", "nftables").cluster) == ("br_netfilter", "nf_conntrack", "nf_tables")


def test_loadable_modules_are_loaded_and_remembered_missing_ones_are_named():
    cluster = lab().cluster
    state = NodeState(modules={"br_netfilter": "loadable", "nf_conntrack": "present", "vxlan": "loadable"})
    [change] = boot.module_changes(cluster, state)
    assert change.what == "load kernel modules br_netfilter, vxlan"
    assert change.lines[0] == "modprobe -a br_netfilter vxlan"
    assert "/var/lib/cluster-lab/demo/modules.loaded" in change.lines[-1]
    assert boot.module_changes(cluster, replace(state, modules=dict.fromkeys(state.modules, "present"))) == []
    missing = boot.missing_modules(cluster, replace(state, modules={"vxlan": "missing"}))
    assert missing == ["kernel module vxlan (for the vxlan overlay: not built in, and modprobe finds no vxlan.ko)"]


def test_a_systemd_node_gets_modules_sysctls_and_an_enabled_boot_unit_once():
    net, cluster = network(), lab().cluster
    fresh = NodeState(systemd=True)
    changes = boot.persistence_changes(cluster, fresh, *persisted(net))
    assert [c.what for c in changes] == [
        "write /etc/modules-load.d/cluster-lab-demo.conf", "write /etc/sysctl.d/90-cluster-lab-demo.conf",
        "write /etc/systemd/system/cluster-lab-demo.service", "enable cluster-lab-demo.service (runs at every boot)"]
    files = boot.persisted_files(cluster, *persisted(net), systemd=True)
    assert files["/etc/modules-load.d/cluster-lab-demo.conf"].splitlines()[1:] == ["br_netfilter", "nf_conntrack",
                                                                               "vxlan", "nf_tables"]
    assert "net.bridge.bridge-nf-call-iptables = 1" in files["/etc/sysctl.d/90-cluster-lab-demo.conf"]
    unit = files["/etc/systemd/system/cluster-lab-demo.service"]
    assert "ExecStart=/usr/bin/env python3 /var/lib/cluster-lab/demo/agent.pyz restore --conf " \
           "/etc/cni/net.d/10-demo.conflist" in unit and "WantedBy=multi-user.target" in unit
    done = NodeState(systemd=True, unit_enabled=True, etc_files={p: sha(t) for p, t in files.items()})
    assert boot.persistence_changes(cluster, done, *persisted(net)) == []
    edited = replace(done, etc_files={**done.etc_files, boot.unit_path("demo"): "0" * 64})
    assert [c.what for c in boot.persistence_changes(cluster, edited, *persisted(net))] == [
        "write /etc/systemd/system/cluster-lab-demo.service", "enable cluster-lab-demo.service (runs at every boot)"]


def test_a_node_without_systemd_gets_no_unit():
    files = boot.persisted_files(lab().cluster, *persisted(network()), systemd=False)
    assert boot.unit_path("demo") not in files and len(files) == 2
    assert all("systemctl" not in line
               for c in boot.persistence_changes(lab().cluster, NodeState(), *persisted(network()))
               for line in c.lines)


def test_the_boot_script_rebuilds_the_overlay_and_chains_but_not_what_survives_a_boot():
    script = diff.boot_script(network(), lab().cluster)
    assert "ip link add flannel.1" in script and "bridge fdb append" in script and "ip neigh replace" in script
    assert "ip route replace 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in script
    assert "iptables-restore --noflush" in script and "-I POSTROUTING 1" in script
    assert "sysctl" not in script and "10-demo.conflist" not in script
    hostgw = diff.boot_script(network(lab("host-gw")), lab("host-gw").cluster)
    assert "flannel" not in hostgw and "ip route replace 10.244.1.0/24 via 198.18.0.12 dev eth0" in hostgw
    assert diff.network_files(network(), lab().cluster)[diff.BOOT_SCRIPT][1] == sha(script)


def test_destroy_unloads_the_modules_and_removes_the_unit_before_the_lab_folder():
    state = NodeState(systemd=True, unit_enabled=True, files={"agent.pyz": "x", "modules.loaded": "y"},
                      etc_files={boot.unit_path("demo"): "z", boot.sysctl_conf("demo"): "w"})
    changes = diff.teardown(state, lab().cluster, None, boot.persistence_teardown(state, "demo"))
    whats = [c.what for c in changes]
    assert whats[-3:-1] == ["unload the kernel modules the lab loaded",
                            "remove /etc/sysctl.d/90-cluster-lab-demo.conf, "
                            "/etc/systemd/system/cluster-lab-demo.service"]
    assert whats[-1].startswith("restore sysctls and remove /var/lib/cluster-lab/demo")
    removal = changes[-2].lines
    assert removal[0] == "systemctl disable --quiet cluster-lab-demo.service"
    assert removal[-1] == "systemctl daemon-reload"
    assert boot.persistence_teardown(NodeState(), "demo") == []


def test_the_facts_script_output_is_read_into_the_state():
    text = ("### modules\nbr_netfilter=loadable\nvxlan=present\n### boot\nb00t\n### init\nsystemd\n### etc\n"
            f"{'a' * 64}  /etc/sysctl.d/90-cluster-lab-demo.conf\nenabled  {boot.unit_link('demo')}\n"
            "### pods\ndefault_web=gone conf=abc\n")
    state = parse_facts(text)
    assert state.modules == {"br_netfilter": "loadable", "vxlan": "present"}
    assert (state.boot_id, state.systemd, state.unit_enabled) == ("b00t", True, True)
    assert state.etc_files == {"/etc/sysctl.d/90-cluster-lab-demo.conf": "a" * 64}
    assert state.pods == {"default_web": "gone"}


def test_a_module_a_node_cannot_load_stops_deploy_on_that_node_with_what_to_do():
    import pytest
    from orchestrator.layers.nodes.read import preflight
    from orchestrator.layers.nodes.facts import CNI_PLUGINS, KERNEL_FEATURES, REQUIRED_TOOLS
    from orchestrator.core.transport import NodeError
    inv = lab()
    state = NodeState(kernel="6.8.0-31-generic",
                      tools=frozenset([*REQUIRED_TOOLS, *(f"kernel:{k}" for k in KERNEL_FEATURES)]),
                      cni_plugins={p: f"/usr/lib/cni/{p}" for p in CNI_PLUGINS},
                      modules={"br_netfilter": "present", "nf_conntrack": "present", "vxlan": "missing"})
    with pytest.raises(NodeError) as error:
        preflight(inv, inv.node("node1"), state)
    assert str(error.value) == (
        "node1: lacks kernel module vxlan (for the vxlan overlay: not built in, and modprobe finds no vxlan.ko); "
        "install its kernel's modules (on Ubuntu: linux-modules-extra-6.8.0-31-generic), or change demo.yaml so "
        "that the lab does not need it")


def test_a_node_is_restoring_until_its_boot_unit_stamped_this_boot():
    """`lab up` waits for it: a node answers SSH seconds before its boot unit has brought the lab back."""
    from orchestrator.layers.nodes.facts import NodeState
    assert NodeState(boot_id="b2", unit_enabled=True, restored=("b1",)).restoring("b1")  # stamped the boot before
    assert NodeState(boot_id="b2", unit_enabled=True).restoring("b1")  # never stamped yet
    done = NodeState(boot_id="b2", unit_enabled=True, restored=("b2", "pod default_web: no address left"))
    assert not done.restoring("b1") and done.restore_errors == ("pod default_web: no address left",)
    assert not NodeState(boot_id="b2").restoring("b1")  # no boot unit (an emulated node, or no lab deployed)
    # deployed in this boot: the deploy put the lab there, and the unit it installed never ran in this boot
    assert not NodeState(boot_id="b2", unit_enabled=True).restoring("b2")
