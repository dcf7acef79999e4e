"""kubectl's rollout commands and their neighbour: `rollout restart|status|history|undo` and
`wait --for=condition=Ready|delete`. Each change is a Deployment manifest applied as `lab apply` applies it."""

from __future__ import annotations

import argparse
import copy
import json
import time
from typing import Optional

from orchestrator import kinds, pipeline
from orchestrator.cli.common import out, progress, resolve_inventory
from orchestrator.cli.resources import one_object, type_names
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.model import Inventory
from orchestrator.core.objects import Deployment, LabObjects, key_of
from orchestrator.core.render import dump_yaml
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import Transport
from orchestrator.kinds.deployment import DEPLOYMENT
from orchestrator.kinds.pod import POD
from orchestrator.layers.pods.apply import observe_pods

POLL_SECONDS = 1.0


def duration(text: str) -> float:
    """kubectl's duration: 90, 90s, 2m, 1h, 1m30s; 0 for none."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    total, number = 0.0, ""
    for char in text.strip():
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total, number = total + float(number) * units[char], ""
        else:
            raise argparse.ArgumentTypeError(f"{text!r} is not a duration: write e.g. 60s, 2m or 1m30s")
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty duration: write e.g. 60s")
    return total + (float(number) if number else 0.0)


def deployment_of(args, command: str) -> tuple[Inventory, LabFiles, Deployment]:
    kind, name = one_object(args.kind, args.name, command)
    if kinds.by_name(kind) is not DEPLOYMENT:
        raise InputError(f"lab {command}: {kind!r}: the lab does this for deployments; write lab {command} "
                         f"deployment/NAME")
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    found = files.read_objects().deployments.get(key_of(args.namespace, name))
    if found is None:
        raise LabError(DEPLOYMENT.not_found(name, args.namespace))
    return inv, files, found


def apply_template(inv: Inventory, files: LabFiles, deployment: Deployment, template: dict, source: str) -> None:
    """Deployment `deployment` applied again with pod template `template`."""
    doc = copy.deepcopy(deployment.manifest)
    doc.setdefault("spec", {})["template"] = template
    with files.lock(), Transport(inv.nodes) as transport:
        pipeline.apply_manifests(inv, transport, files, kinds.load_text(json.dumps(doc), source), progress)


def cmd_rollout(args) -> int:
    if args.action == "restart":
        inv, files, deployment = deployment_of(args, "rollout restart")
        with files.lock(), Transport(inv.nodes) as transport:
            out.print(pipeline.restart_deployment(inv, transport, files, deployment.key, progress), markup=False)
        return 0
    inv, files, deployment = deployment_of(args, f"rollout {args.action}")
    if args.action == "status":
        return rollout_status(inv, files, deployment, args.timeout)
    if args.action == "history":
        return rollout_history(deployment, args.revision)
    return rollout_undo(inv, files, deployment, args.to_revision)


def rollout_status(inv: Inventory, files: LabFiles, deployment: Deployment, timeout: Optional[float]) -> int:
    """Until every replica of the current template runs and no other pod is left (as kubectl waits for them)."""
    deadline = time.monotonic() + (timeout or 0) if timeout else None
    while True:
        objects = files.read_objects()
        current = objects.deployments.get(deployment.key, deployment)
        with Transport(inv.nodes) as transport:
            observe_pods(inv, transport, objects)
        pods = objects.pods_of(current.owner)
        available = [p for p in pods if p.template_hash == current.template_hash
                     and objects.observed.get(p.key) == "running"]
        if len(available) == current.replicas == len(pods):
            print(f'deployment "{current.name}" successfully rolled out')
            return 0
        print(f'Waiting for deployment "{current.name}" rollout to finish: {len(available)} of {current.replicas} '
              "updated replicas are available...")
        if deadline is not None and time.monotonic() > deadline:
            raise LabError("timed out waiting for the condition (`lab describe deploy "
                           f"{current.name}` and `lab get pods` show what is missing)")
        time.sleep(POLL_SECONDS)


def rollout_history(deployment: Deployment, revision: Optional[int]) -> int:
    if not deployment.revisions:
        raise LabError(f'no rollout history found for deployment "{deployment.name}" (it was applied before the lab '
                       "kept revisions: apply it once more)")
    if revision:
        chosen = revision_numbered(deployment, revision)
        print(f"deployment.apps/{deployment.name} with revision #{revision}\nPod Template:")
        print("".join(f"  {line}\n" for line in dump_yaml(chosen["template"]).splitlines()), end="")
        return 0
    print(f"deployment.apps/{deployment.name} \nREVISION  CHANGE-CAUSE")
    for entry in deployment.revisions:
        print(f"{entry['revision']:<10}{entry.get('change_cause') or '<none>'}")
    return 0


def revision_numbered(deployment: Deployment, number: int) -> dict:
    found = next((r for r in deployment.revisions if r["revision"] == number), None)
    if found is None:
        raise InputError(f"unable to find the specified revision {number} of deployment {deployment.name} "
                         f"(`lab rollout history deploy/{deployment.name}` lists them)")
    return found


def rollout_undo(inv: Inventory, files: LabFiles, deployment: Deployment, to_revision: Optional[int]) -> int:
    """The template of the revision before the current one (or `to_revision`) applied again: it becomes the
    newest revision, as in Kubernetes."""
    if to_revision:
        target = revision_numbered(deployment, to_revision)
    elif len(deployment.revisions) >= 2:
        target = deployment.revisions[-2]
    else:
        raise LabError(f'no rollout history found for deployment "{deployment.name}": it has one revision')
    if target["template_hash"] == deployment.template_hash:
        print(f"deployment.apps/{deployment.name} skipped rollback (current template already matches revision "
              f"{target['revision']})")
        return 0
    apply_template(inv, files, deployment, target["template"], f"lab rollout undo deployment/{deployment.name}")
    print(f"deployment.apps/{deployment.name} rolled back")
    return 0


def cmd_wait(args) -> int:
    """`lab wait --for=condition=Ready pod/NAME...|pod -l SEL` and `--for=delete`: until each pod is running (or
    gone), at most --timeout (kubectl's default, 30 s)."""
    condition = args.for_
    if condition not in ("delete", "condition=Ready", "condition=ready", "condition=Available"):
        raise InputError(f"lab wait: --for={condition}: the lab waits for condition=Ready (pods), "
                         "condition=Available (deployments) or delete")
    groups = type_names(args.kind, args.names, "wait")
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    wanted = [(kinds.by_name(kind) or POD, name) for kind, names in groups for name in names]
    if any(kinds.by_name(kind) not in (POD, DEPLOYMENT) for kind, _ in groups):
        raise InputError("lab wait: name pods or deployments: lab wait --for=condition=Ready pod/NAME")
    if args.selector:
        if len(groups) != 1 or groups[0][1]:
            raise InputError("lab wait: with -l give the kind alone: lab wait --for=condition=Ready pod -l app=web")
        selector = dict(term.split("=", 1) for term in args.selector.split(","))
        objects = files.read_objects()
        wanted = [(POD, p.name) for p in objects.pods.values()
                  if p.namespace == args.namespace and all(p.labels.get(k) == v for k, v in selector.items())]
        if not wanted:
            raise LabError(f"no matching resources found (pods with {args.selector} in {args.namespace})")
    if not wanted:
        raise InputError("lab wait: name pods or deployments: lab wait --for=condition=Ready pod/NAME")
    if condition != "delete":
        objects = files.read_objects()
        for kind, name in wanted:
            key = key_of(args.namespace, name)
            if key not in (objects.pods if kind is POD else objects.deployments):
                raise LabError(kind.not_found(name, args.namespace))
    deadline = time.monotonic() + args.timeout
    while True:
        objects = files.read_objects()
        if condition != "delete":
            with Transport(inv.nodes) as transport:
                observe_pods(inv, transport, objects)
        left = [(kind, name) for kind, name in wanted
                if not met(objects, kind, key_of(args.namespace, name), condition)]
        if not left:
            for kind, name in wanted:
                print(f"{kind.resource.rstrip('s')}/{name} condition met")
            return 0
        if time.monotonic() > deadline:
            kind, name = left[0]
            raise LabError(f"timed out waiting for the condition on {kind.resource}/{name}")
        time.sleep(POLL_SECONDS)


def met(objects: LabObjects, kind, key: str, condition: str) -> bool:
    if kind is POD:
        if condition == "delete":
            return key not in objects.pods
        return key in objects.pods and objects.observed.get(key) == "running"
    deployment = objects.deployments.get(key)
    if condition == "delete":
        return deployment is None
    if deployment is None:
        return False
    pods = objects.pods_of(deployment.owner)
    return len([p for p in pods if objects.observed.get(p.key) == "running"]) >= deployment.replicas
