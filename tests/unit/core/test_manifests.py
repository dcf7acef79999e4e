"""Kubernetes YAML: the talk's manifests apply unchanged; every bad input is one precise line."""

from pathlib import Path

import pytest

from orchestrator.core.errors import InputError
from orchestrator.core.manifests import load_documents
from orchestrator.kinds import parse_all


REPO = Path(__file__).resolve().parents[3]


def parse_text(tmp_path, text, warnings=None):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return parse_all(str(path), (warnings if warnings is not None else []).append)


def test_the_talks_nginx_example_parses_unchanged():
    warnings = []
    deployment, service = parse_all(str(REPO / "examples" / "nginx.yaml"), warnings.append)
    assert (deployment.kind, deployment.name, deployment.namespace, deployment.replicas) == \
        ("Deployment", "nginx", "default", 3)
    assert deployment.selector == {"app": "nginx"} and deployment.template.labels == {"app": "nginx"}
    assert deployment.template.served_ports() == ([80], [80])  # no ports declared: port 80, as nginx
    assert deployment.ref == "deployment.apps/nginx"
    assert (service.kind, service.selector) == ("Service", {"app": "nginx"})
    assert warnings == []  # `image` is expected and silently replaced by the lab's server


def test_ports_host_ports_and_ignored_fields(tmp_path):
    warnings = []
    (pod,) = parse_text(tmp_path, """
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: team-a, labels: {app: p}}
spec:
  nodeName: node2
  restartPolicy: Always
  containers:
    - name: c
      image: x
      resources: {limits: {cpu: 1}}
      ports: [{containerPort: 8080, hostPort: 30080, name: http}, {containerPort: 53, protocol: UDP}]
""", warnings)
    assert pod.namespace == "team-a" and pod.template.node_name == "node2"
    assert [(p.container_port, p.protocol, p.host_port) for p in pod.template.ports] == \
        [(8080, "TCP", 30080), (53, "UDP", None)]
    assert pod.template.served_ports() == ([53, 8080], [53, 8080])
    assert any("spec.restartPolicy: ignored" in w for w in warnings)
    assert any("spec.containers[0].resources: ignored" in w for w in warnings)


def test_the_first_containers_env_is_read_and_part_of_the_template(tmp_path):
    warnings = []
    text = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: c
          image: nginx
          envFrom: [{prefix: SITE_, configMapRef: {name: site}}]
          env:
            - {name: MODE, value: test}
            - {name: PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password, optional: true}}}
            - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
"""
    (deployment,) = parse_text(tmp_path, text, warnings)
    assert [(e.name, e.value, e.source, e.source_name, e.key, e.optional) for e in deployment.template.env] == [
        ("SITE_", "", "ConfigMap", "site", "", False), ("MODE", "test", "", "", "", False),
        ("PASSWORD", "", "Secret", "db", "password", True)]
    assert warnings == [f"{tmp_path / 'm.yaml'}: spec.template.spec.containers[0].env[2].valueFrom: fieldRef is not "
                        "supported: NODE is left out of the pod's env"]
    (changed,) = parse_text(tmp_path, text.replace("value: test", "value: prod"))
    assert changed.template.digest() != deployment.template.digest()  # a new env rolls out new pods


def test_template_hash_changes_with_the_template_only():
    a = parse_all(str(REPO / "examples" / "nginx.yaml"), print)[0].template
    assert a.digest() == a.digest() and len(a.digest()) == 10


DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx}]
"""

BAD = [
    (DEPLOY.replace("matchLabels: {app: web}", "matchLabels: {app: api}"), "spec.selector.matchLabels",
     "selector app=api does not match the template's labels app=web"),
    (DEPLOY.replace("kind: Deployment", "kind: StatefulSet"), "kind", "not supported"),
    (DEPLOY.replace("apps/v1", "v1"), "apiVersion", "write apiVersion: apps/v1"),
    (DEPLOY.replace("name: web}", "name: Web_1}"), "metadata.name", "not a valid Deployment name"),
    (DEPLOY.replace("replicas: 2", "replicas: -1"), "spec.replicas", "from 0 to 1000"),
    (DEPLOY.replace("containers: [{name: c, image: nginx}]", "containers: []"), "spec.template.spec.containers",
     "missing or empty"),
    (DEPLOY.replace("image: nginx}", "image: nginx, ports: [{containerPort: 70000}]}"),
     "spec.template.spec.containers[0].ports[0].containerPort", "from 1 to 65535"),
    (DEPLOY.replace("image: nginx}", "image: nginx, ports: [{containerPort: 80, protocol: SCTP}]}"),
     "spec.template.spec.containers[0].ports[0].protocol", "'SCTP' is not supported"),
    (DEPLOY.replace("containers:", "hostNetwork: true\n      containers:"), "spec.template.spec.hostNetwork",
     "not supported"),
    (DEPLOY + "---\n" + DEPLOY, "metadata.name", "Deployment default/web is also defined in"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "spec", "missing"),
    ("kind: Pod\n  bad: [", "line", "not valid YAML"),
    (DEPLOY.replace("labels: {app: web}", "labels: {app: web, 'tier;rm -rf': x}"),
     "spec.template.metadata.labels.tier;rm -rf", "label key 'tier;rm -rf' is not a valid name"),
    (DEPLOY.replace("labels: {app: web}", "labels: {app: web, tier: 'a b'}"),
     "spec.template.metadata.labels.tier", "label value 'a b' of 'tier' is not valid"),
    (DEPLOY.replace("labels: {app: web}", "labels: {app: web, 'Example.com/x': y}"),
     "spec.template.metadata.labels.Example.com/x", "is not a DNS subdomain"),
    (DEPLOY.replace("labels: {app: web}", f"labels: {{app: web, x: {'v' * 64}}}"),
     "spec.template.metadata.labels.x", "is not valid"),
]

LABELS_OK = DEPLOY.replace("labels: {app: web}", "labels: {app: web, app.kubernetes.io/name: web, empty: '', "
                                                 "v: 1.2_x-Y}")


@pytest.mark.parametrize("text,field,words", BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_bad_manifests_get_one_precise_line(tmp_path, text, field, words):
    with pytest.raises(InputError) as caught:
        parse_text(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "m.yaml") in message
    assert f": {field}" in message and words in message, message


def test_folders_and_lists(tmp_path):
    (tmp_path / "a.yaml").write_text(DEPLOY)
    (tmp_path / "b.yml").write_text("apiVersion: v1\nkind: List\nitems:\n- " +
                                    DEPLOY.replace("web", "api").replace("\n", "\n  "))
    (tmp_path / "notes.txt").write_text("ignored")
    docs = load_documents(str(tmp_path))
    assert [d["metadata"]["name"] for _, d in docs] == ["web", "api"]
    with pytest.raises(InputError, match="no such file or folder"):
        load_documents(str(tmp_path / "missing"))


def test_kubernetes_label_syntax_is_accepted(tmp_path):
    [deployment] = parse_text(tmp_path, LABELS_OK)
    assert deployment.template.labels == {"app": "web", "app.kubernetes.io/name": "web", "empty": "", "v": "1.2_x-Y"}


def test_every_kind_is_also_held_to_kubernetes_schema():
    """What the lab's own checks do not look at, Kubernetes' schema still refuses: one line, the field, where to
    read about it."""
    from orchestrator.kinds import parse
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "lables": {"app": "p"}},
           "spec": {"containers": [{"name": "c", "image": "x"}]}}
    with pytest.raises(InputError) as caught:
        parse(pod, "pod.yaml", print)
    assert str(caught.value) == ("pod.yaml: metadata: unknown field 'lables'; "
                                 "see `lab explain pod.metadata`")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "annotations": {"owner": 7}},
               "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}
    with pytest.raises(InputError, match=r"s.yaml: metadata.annotations.owner: 7 is not of type 'string'"):
        parse(service, "s.yaml", print)


def test_two_objects_without_the_separator_are_an_error_not_the_last_one(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n"
                    "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\n")
    with pytest.raises(InputError, match=r"two.yaml: line 5: not valid YAML \(key 'apiVersion' is given twice "
                                         r"\(a missing '---' between two objects\?\)\); fix the syntax there"):
        load_documents(str(path))


def test_a_service_port_name_may_be_63_characters_as_kubernetes_allows(tmp_path):
    name = "service-port-tcp-80"  # the upstream NetworkPolicy e2e tests' name: longer than a containerPort's 15
    (service,) = parse_text(tmp_path, f"""
apiVersion: v1
kind: Service
metadata: {{name: s}}
spec: {{selector: {{app: s}}, ports: [{{name: {name}, port: 80}}]}}
""")
    assert service.service.ports[0].name == name
    with pytest.raises(InputError, match="spec.ports\\[0\\].name: .* is not a valid port name"):
        parse_text(tmp_path, f"""
apiVersion: v1
kind: Service
metadata: {{name: s}}
spec: {{selector: {{app: s}}, ports: [{{name: {'a' * 64}, port: 80}}]}}
""")


def test_an_ip_block_with_host_bits_is_read_as_its_network_with_kubernetes_warning(tmp_path):
    warnings: list[str] = []
    (policy,) = parse_text(tmp_path, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.244.0.3/4}}]}]
""", warnings)
    assert str(policy.policy.ingress[0].peers[0].ip_block.cidr) == "0.0.0.0/4"
    assert [w.split("/m.yaml: ")[1] for w in warnings] == [
        'spec.ingress[0].from[0].ipBlock.cidr: non-standard CIDR value "10.244.0.3/4" will be considered invalid in '
        'a future Kubernetes release: use "0.0.0.0/4"']
