"""After a boot: the network script deploy left, the stored service rules and the pods, once per boot."""

from __future__ import annotations

import os

from .cni import CniError, load_conf, run
from .contract import BOOT_SCRIPT, CNI_PATH, RESTORE_STAMP, RestoreAnswer, write_durably
from .host import boot_id
from .pods import pod_add, pod_records
from .proxy import proxy_sync, stored_request


def restore(lib: str, conf_path: str, cni_path: str = CNI_PATH) -> RestoreAnswer:
    """After a boot, bring back what the kernel forgot, once per boot: the network (the script deploy left
    in <lib>/boot), the service rules this node held, then the pods (namespace, CNI ADD with the same
    container ID, server). Each part is tried even when one before it failed."""
    boot = boot_id()
    stamp = os.path.join(lib, RESTORE_STAMP)
    try:
        with open(stamp) as handle:
            if handle.readline().strip() == boot:
                return RestoreAnswer(boot=boot)
    except OSError:
        pass
    restored, errors = [], []
    script = os.path.join(lib, BOOT_SCRIPT)
    if os.path.exists(script):
        try:
            run("bash", script)
            restored.append("network")
        except CniError as exc:
            errors.append(f"network: {exc}")
    request = stored_request(lib)
    if request:
        request.verify = True  # the kernel forgot what was loaded before the boot
        try:
            proxy_sync(lib, request)
            restored.append("service rules")
        except (CniError, OSError) as exc:
            errors.append(f"service rules: {exc}")
    try:
        conf = load_conf(open(conf_path).read(), conf_path)
    except (OSError, CniError) as exc:
        conf, errors = None, errors + [f"pods: {exc}"]
    for record in pod_records(lib) if conf else []:
        if os.path.exists(f"/run/netns/{record['netns']}"):
            continue
        assert conf is not None  # pods are restored only with a conf
        try:
            pod_add(lib, conf, cni_path, record)
            restored.append(f"pod {record['key']}")
        except (CniError, OSError) as exc:
            errors.append(f"pod {record['key']}: {exc}")
    write_durably(stamp, "".join(line + "\n" for line in [boot, *errors]))  # `lab up` waits for it
    return RestoreAnswer(changed=bool(restored), failed=bool(errors), msg="; ".join(errors), boot=boot,
                         restored=restored, errors=errors)
