"""Ingress (networking.k8s.io/v1) served by the same controller and proxy as the Gateway API (pure): one controller,
two front-ends. The Ingresses of the lab's IngressClass (or of none, where the lab's class is the default) become
routes on one Gateway of the lab's own, kube-system/ingress, whose proxy is the cluster's ingress controller
(Deployment and LoadBalancer Service ingress-lab in kube-system, as an ingress controller's install has them).

Ingress's own rules, kept where they differ from HTTPRoute's: a host `*.example.com` covers exactly one label;
Prefix matches by path element (as PathPrefix does), Exact the whole path, ImplementationSpecific here as Prefix;
a rule's paths go to one Service port each (by number or by name); defaultBackend takes what no rule matches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from orchestrator.core.errors import field_error
from orchestrator.core.manifests import ServicePort
from orchestrator.core.render import render
from orchestrator.layers.gateway.routes import (CONTROLLER_NAME, BackendRef, Gateway, GatewayClass, HTTPRoute,
                                                Listener, Match, ParentRef, PathMatch, Rule, check_hostname)

INGRESS_API = "networking.k8s.io/v1"
INGRESS_KIND, INGRESS_CLASS_KIND = "Ingress", "IngressClass"
INGRESS_CONTROLLER = "cluster-lab.dev/ingress-controller"
LAB_INGRESS_CLASS = "lab"
DEFAULT_CLASS = "ingressclass.kubernetes.io/is-default-class"
CLASS_TEMPLATE = "gateway/ingressclass.yaml.j2"
# the Gateway standing for the ingress controller: its class is the lab's own, named here so that it is served
# whatever GatewayClasses the user keeps; 443 is served from the start (TLS refused until an Ingress names a
# certificate), as an ingress controller's Service has both ports
INGRESS_GATEWAY = Gateway("kube-system", "ingress", "lab-ingress",
                          (Listener("http", 80, "HTTP", routes_from="All"),), "", proxy="ingress-lab",
                          tls_ports=(443,))
INGRESS_GATEWAY_CLASS = GatewayClass("lab-ingress", CONTROLLER_NAME, "")
PATH_TYPES = {"Exact": "Exact", "Prefix": "PathPrefix", "ImplementationSpecific": "PathPrefix"}


def lab_ingress_class_yaml() -> tuple[str, str]:
    """The lab's IngressClass as `lab deploy` installs it; as YAML, and where it comes from."""
    return render(CLASS_TEMPLATE, name=LAB_INGRESS_CLASS, controller=INGRESS_CONTROLLER), f"templates/{CLASS_TEMPLATE}"


def served_classes(classes: Mapping[str, Mapping[str, Any]]) -> tuple[set[str], Optional[str]]:
    """The IngressClasses the lab's controller serves, and the default class (if exactly one is marked)."""
    ours = {name for name, r in classes.items() if (r.get("spec") or {}).get("controller") == INGRESS_CONTROLLER}
    defaults = [name for name, r in classes.items()
                if str((r.get("annotations") or {}).get(DEFAULT_CLASS, "")).lower() == "true"]
    return ours, defaults[0] if len(defaults) == 1 else None


def class_of(spec: Mapping[str, Any], default: Optional[str]) -> Optional[str]:
    return spec.get("ingressClassName") or default


def backend_ref(backend: Mapping[str, Any], namespace: str, ports: Mapping[str, tuple[ServicePort, ...]]) -> BackendRef:
    """An Ingress backend as the route's backendRef: its Service port by number, or by name on the Service."""
    service = backend.get("service") or {}
    port = service.get("port") or {}
    number = port.get("number")
    if number is None and port.get("name"):
        number = next((p.port for p in ports.get(f"{namespace}/{service.get('name')}", ()) if p.name == port["name"]),
                      None)
    return BackendRef(str(service.get("name", "")), namespace, number)


def ingress_routes(namespace: str, name: str, spec: Mapping[str, Any], created: str,
                   ports: Mapping[str, tuple[ServicePort, ...]]) -> list[HTTPRoute]:
    """The routes an Ingress stands for on the ingress Gateway: one per rule (its host), one for defaultBackend."""
    parent = (ParentRef(INGRESS_GATEWAY.name, INGRESS_GATEWAY.namespace),)
    routes = []
    for i, rule in enumerate(spec.get("rules") or []):
        host = rule.get("host")
        rules = tuple(Rule((Match(PathMatch(PATH_TYPES[p.get("pathType", "Prefix")], p.get("path") or "/")),),
                           (backend_ref(p.get("backend") or {}, namespace, ports),))
                      for p in (rule.get("http") or {}).get("paths") or [])
        if rules:
            routes.append(HTTPRoute(namespace, f"{name}:rule{i}", parent, (host,) if host else (), rules, created,
                                    one_label_wildcards=True))
    if spec.get("defaultBackend"):
        routes.append(HTTPRoute(namespace, f"{name}:default", parent, (), (
            Rule((Match(),), (backend_ref(spec["defaultBackend"], namespace, ports),)),), created))
    return routes


def tls_listeners(specs: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[Listener, ...]:
    """The ingress Gateway's HTTPS listeners on 443 for the served Ingresses' `tls` ((namespace, spec), oldest
    first): one per host named (the first Ingress to name a host gives its Secret), and one without a hostname
    (the default certificate) for an entry naming no host. A host's HTTPS serves every Ingress's rules for it."""
    chosen: dict[Optional[str], tuple[str, str]] = {}
    for namespace, spec in specs:
        for entry in spec.get("tls") or []:
            for host in entry.get("hosts") or [None]:
                chosen.setdefault(host, (namespace, str(entry.get("secretName") or "")))
    return tuple(Listener(f"https-{(host or 'default').replace('*', 'wildcard')}", 443, "HTTPS", host,
                          ((namespace, secret),) if secret else (), routes_from="All", any_namespace_certificates=True)
                 for host, (namespace, secret) in chosen.items())


def check_ingress(spec: Mapping[str, Any], source: str) -> None:
    """What Kubernetes' schema leaves to the API server's validation: hosts and paths."""
    for i, entry in enumerate(spec.get("tls") or []):
        for j, host in enumerate(entry.get("hosts") or []):
            check_hostname(host, source, f"spec.tls[{i}].hosts[{j}]")
    for i, rule in enumerate(spec.get("rules") or []):
        if rule.get("host"):
            check_hostname(rule["host"], source, f"spec.rules[{i}].host")
        for j, path in enumerate((rule.get("http") or {}).get("paths") or []):
            where = f"spec.rules[{i}].http.paths[{j}]"
            if "pathType" not in path:
                raise field_error(source, f"{where}.pathType", "missing", "write Exact, Prefix or "
                                  "ImplementationSpecific")
            if not str(path.get("path", "")).startswith("/"):
                raise field_error(source, f"{where}.path", f"{path.get('path')!r} is not an absolute path",
                                  "start it with /")
    if not spec.get("rules") and not spec.get("defaultBackend"):
        raise field_error(source, "spec", "neither rules nor defaultBackend", "give rules (host, http.paths) or a "
                          "defaultBackend")


def host_paths(spec: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """(host, path, pathType) of every path an Ingress routes."""
    return {(rule.get("host") or "*", path.get("path", "/"), path.get("pathType", ""))
            for rule in spec.get("rules") or [] for path in (rule.get("http") or {}).get("paths") or []}
