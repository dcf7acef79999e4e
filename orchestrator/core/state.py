"""The lab's files under `.lab/<name>/` (or $LAB_STATE_DIR): paths, atomic writes, a lock, the current lab."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from orchestrator.agent.contract import write_durably
from orchestrator.core.objects import LabObjects


def state_root() -> Path:
    """Where labs keep their files: $LAB_STATE_DIR, else `.lab` in the current directory."""
    return Path(os.environ.get("LAB_STATE_DIR") or ".lab").absolute()


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """The controller's durable write of a lab file (the contract's write_durably, which the agent uses too)."""
    write_durably(str(path), data, mode)


@dataclass(frozen=True)
class LabFiles:
    """The files of one lab."""

    name: str
    root: Path

    @classmethod
    def of(cls, name: str) -> "LabFiles":
        return cls(name, state_root() / name)

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.yaml"

    @property
    def node_labels(self) -> Path:
        """JSON of the labels `lab label node` set (node -> key -> value) or removed (null), over the inventory's."""
        return self.root / "node-labels.json"

    def read_node_labels(self) -> dict[str, dict[str, Optional[str]]]:
        try:
            data = json.loads(self.node_labels.read_text())
        except (OSError, ValueError):
            return {}
        return {str(n): {str(k): None if v is None else str(v) for k, v in labels.items()}
                for n, labels in data.items() if isinstance(labels, dict)} if isinstance(data, dict) else {}

    def write_node_labels(self, changes: dict[str, dict[str, Optional[str]]]) -> None:
        atomic_write(self.node_labels, json.dumps(changes, indent=2, sort_keys=True) + "\n", mode=0o644)

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def client_key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def record(self) -> Path:
        """JSON written by the provider: what it created (addresses, PIDs)."""
        return self.root / "lab.json"

    @property
    def objects(self) -> Path:
        """JSON of what the lab manages: subnet leases, pods, deployments, services; each node's last boot ID."""
        return self.root / "objects.json"

    @property
    def sent_rules(self) -> Path:
        """JSON of the service rules the controller last sent the nodes (digests), for partial syncs."""
        return self.root / "sent-rules.json"

    @property
    def broken_objects(self) -> Path:
        """JSON of the NetworkPolicies `lab break` applied and what the lab meant instead (until `lab fix`)."""
        return self.root / "broken-objects.json"

    def read_objects(self) -> LabObjects:
        """The lab's objects; a missing or unreadable file reads as none (it is a cache of the nodes' state)."""
        try:
            data = json.loads(self.objects.read_text())
        except (OSError, ValueError):
            data = {}
        return LabObjects.from_json(data)

    def write_objects(self, objects: LabObjects) -> None:
        self.create()
        atomic_write(self.objects, json.dumps(objects.to_json(), indent=2, sort_keys=True) + "\n")

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def exists(self) -> bool:
        return self.root.is_dir()

    def create(self) -> None:
        # Private keys live here: keep the folder root-only.
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)

    def read_record(self) -> dict[str, Any]:
        """What the provider recorded; a missing or broken file reads as nothing recorded."""
        try:
            data = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_record(self, data: dict[str, Any]) -> None:
        atomic_write(self.record, json.dumps(data, indent=2, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the lab's lock (one `up`/`down`/`deploy` at a time per lab). The lock file lives beside the lab's
        folder, so removing the folder under the lock is safe."""
        state_root().mkdir(parents=True, exist_ok=True)
        with open(state_root() / f".{self.name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def current_lab() -> Optional[str]:
    """The lab brought up last (`.lab/current`), if it still exists."""
    try:
        name = (state_root() / "current").read_text().strip()
    except OSError:
        return None
    return name if name and LabFiles.of(name).exists() else None


def set_current_lab(name: Optional[str]) -> None:
    path = state_root() / "current"
    if name is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        atomic_write(path, name + "\n", mode=0o644)
