"""A CNI runtime, the part of a container runtime that runs network plugins: the CNI_* environment, the
config on stdin, results chained as prevResult, the result cached for DEL/CHECK, DEL after a failed ADD."""

from __future__ import annotations

import json
import os
import re
import subprocess

from .contract import write_durably


CACHE_DIR = "/var/lib/cni/results"


CONTAINER_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")


LOOPBACK_CONF = {"cniVersion": "1.0.0", "name": "loopback", "type": "loopback"}


class CniError(Exception):
    """A CNI failure, with the spec's error code."""

    def __init__(self, msg: str, code: int = 999):
        super().__init__(msg)
        self.code = code


def load_conf(text: str, source: str) -> dict:
    """A network configuration (list); a single plugin's config becomes a list of one."""
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as exc:
        before = text[:exc.pos].rstrip()
        if before.endswith(",") and text[exc.pos:exc.pos + 1] in "]}":
            line = before.count("\n") + 1
            raise CniError(f"{source}: line {line}: trailing comma before '{text[exc.pos]}' (line {exc.lineno}): "
                           f"not valid JSON; remove the comma at the end of line {line}", 6) from None
        raise CniError(f"{source}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}); "
                       "fix the JSON there", 6) from None
    if not isinstance(conf, dict):
        raise CniError(f"{source}: expected a JSON object", 6)
    if "plugins" not in conf:
        if "type" not in conf:
            raise CniError(f"{source}: neither \"plugins\" nor \"type\": not a CNI config; add \"type\"", 1)
        plugin = {k: v for k, v in conf.items() if k not in ("cniVersion", "name")}
        conf = {"cniVersion": conf.get("cniVersion", "1.0.0"), "name": conf.get("name", ""), "plugins": [plugin]}
    for key in ("cniVersion", "name"):
        if not conf.get(key):
            raise CniError(f"{source}: missing \"{key}\"; add it", 1)
    if not isinstance(conf["plugins"], list) or not all(isinstance(p, dict) and p.get("type")
                                                        for p in conf["plugins"]):
        raise CniError(f"{source}: \"plugins\" must be a list of objects with a \"type\"", 1)
    return conf


def check_arguments(container_id: str, ifname: str) -> None:
    """The spec's rules for the container ID and the interface name."""
    if not CONTAINER_ID.match(container_id or ""):
        raise CniError(f"container ID {container_id!r} is invalid: it must start with a letter or digit, "
                       "followed by letters, digits, '_', '.' or '-'", 2)
    if not ifname or len(ifname) > 15 or ifname in (".", "..") or re.search(r"[/:\s]", ifname):
        raise CniError(f"interface name {ifname!r} is invalid: 1-15 characters, not '.' or '..', "
                       "no '/', ':' or white space", 2)


def plugin_config(conf: dict, plugin: dict, prev_result, runtime_config: dict) -> dict:
    """What one plugin of a list gets on stdin: its own config plus name, cniVersion, prevResult and the
    runtimeConfig for the capabilities it declares."""
    config = dict(plugin)
    config["name"] = conf["name"]
    config["cniVersion"] = conf["cniVersion"]
    if prev_result is not None:
        config["prevResult"] = prev_result
    capabilities = plugin.get("capabilities") or {}
    runtime = {key: value for key, value in runtime_config.items() if capabilities.get(key)}
    if runtime:
        config["runtimeConfig"] = runtime
    return config


def find_plugin(name: str, cni_path: str) -> str:
    for folder in cni_path.split(":"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    raise CniError(f"plugin {name!r} not found in CNI_PATH {cni_path}", 7)


def exec_plugin(command: str, config: dict, container_id: str, netns: str, ifname: str, cni_path: str,
                args: str = ""):
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=container_id, CNI_NETNS=netns,
               CNI_IFNAME=ifname, CNI_PATH=cni_path)
    if args:
        env["CNI_ARGS"] = args
    proc = subprocess.run([find_plugin(config["type"], cni_path)], input=json.dumps(config).encode(), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            msg = err.get("msg", out) + (f": {err['details']}" if err.get("details") else "")
            code = int(err.get("code", 999))
        except (ValueError, AttributeError):
            msg, code = out or proc.stderr.decode(errors="replace").strip(), 999
        raise CniError(f"{config['type']} {command}: {msg}", code)
    return json.loads(out) if out else None


def cache_path(conf: dict, container_id: str, ifname: str, cache_dir: str) -> str:
    return os.path.join(cache_dir, f"{conf['name']}-{container_id}-{ifname}")


def cni(command: str, conf: dict, container_id: str, netns: str, ifname: str, cni_path: str,
        runtime_config=None, cache_dir: str = CACHE_DIR, args: str = ""):
    """Run CNI `command` for the whole network config list; return the final result (ADD, CHECK) or None.
    `args` is CNI_ARGS for ADD (e.g. "IgnoreUnknown=1;IP=10.244.0.8", which host-local honours)."""
    check_arguments(container_id, ifname)
    runtime_config = runtime_config or {}
    cache = cache_path(conf, container_id, ifname, cache_dir)
    if command == "VERSION":
        return {p["type"]: exec_plugin("VERSION", {"cniVersion": conf["cniVersion"]}, container_id, netns,
                                       ifname, cni_path) for p in conf["plugins"]}
    if command == "ADD":
        result = None
        try:
            for plugin in conf["plugins"]:
                result = exec_plugin("ADD", plugin_config(conf, plugin, result, runtime_config),
                                     container_id, netns, ifname, cni_path, args)
        except CniError:
            # Undo what the plugins that succeeded did, as a runtime does after a failed ADD.
            try:
                cni("DEL", conf, container_id, netns, ifname, cni_path, runtime_config, cache_dir)
            except CniError:
                pass
            raise
        write_durably(cache, json.dumps({"kind": "cniCacheV1", "containerId": container_id, "ifName": ifname,
                                            "networkName": conf["name"], "config": conf,
                                            "capabilityArgs": runtime_config, "result": result}))
        return result
    cached = None
    try:
        with open(cache) as handle:
            cached = json.load(handle)
    except (OSError, ValueError):
        if command == "CHECK":
            raise CniError(f"no cached result for {container_id}/{ifname}: was it added?", 4) from None
    prev = cached.get("result") if cached else None
    runtime = (cached or {}).get("capabilityArgs") or runtime_config
    if cached and cached.get("config") and command == "DEL":
        conf = cached["config"]  # undo what was set up, with the config it was set up with
    if command == "CHECK":
        for plugin in conf["plugins"]:
            exec_plugin("CHECK", plugin_config(conf, plugin, prev, runtime), container_id, netns, ifname, cni_path)
        return prev
    if command == "DEL":
        errors = []
        for plugin in reversed(conf["plugins"]):
            try:
                exec_plugin("DEL", plugin_config(conf, plugin, prev, runtime), container_id, netns, ifname, cni_path)
            except CniError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        try:
            os.unlink(cache)
        except FileNotFoundError:
            pass
        return None
    raise CniError(f"unknown CNI command {command!r}; use ADD, DEL, CHECK or VERSION", 4)


def run(*argv: str) -> str:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise CniError(f"{' '.join(argv)}: {proc.stderr.decode(errors='replace').strip()}", 999)
    return proc.stdout.decode()
