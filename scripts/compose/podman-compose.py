#!/usr/bin/python3
"""Runs compose.yaml with plain podman commands: `podman-compose.py up|down PROJECT [FILE]`.

Debian 12's podman-compose (1.0.3) drops `ipv4_address` and passes `network_mode: service:X`
to podman unchanged (podman wants `container:X`), and Docker's engine is not everywhere. This
runs the file as `docker-compose config` normalises it (so it is validated the same way) and
refuses any key it does not translate, so what runs is exactly what the file says. Names follow
compose: networks PROJECT_NET, containers PROJECT_SERVICE_1. `up` starts services in
dependency order and prints each podman command; `down` removes what `up` made.
"""
import json
import subprocess
import sys

import yaml

SERVICE_KEYS = {"build", "image", "command", "entrypoint", "dns", "networks", "network_mode",
                "cap_add", "volumes", "depends_on"}


def podman(*args, check=True):
    print("+ podman " + " ".join(args), flush=True)
    return subprocess.run(["podman", *args], check=check)


def order(services):
    done, out = set(), []

    def visit(name, path=()):
        if name in path:
            sys.exit(f"depends_on cycle: {' -> '.join(path + (name,))}")
        if name in done:
            return
        spec = services[name]
        deps = list(spec.get("depends_on", {}))
        mode = spec.get("network_mode", "")
        if mode.startswith("service:"):
            deps.append(mode.split(":", 1)[1])
        for dep in deps:
            visit(dep, path + (name,))
        done.add(name)
        out.append(name)

    for name in sorted(services):
        visit(name)
    return out


def up(project, config):
    for name, spec in (config.get("networks") or {}).items():
        unknown = set(spec or {}) - {"internal", "ipam"}
        if unknown:
            sys.exit(f"network {name}: unsupported keys {sorted(unknown)}")
        args = ["network", "create"]
        if (spec or {}).get("internal"):
            args.append("--internal")
        for pool in ((spec or {}).get("ipam") or {}).get("config", []):
            args += ["--subnet", pool["subnet"]]
        podman(*args, f"{project}_{name}")
    services = config["services"]
    built = set()
    for name in order(services):
        spec = services[name]
        unknown = set(spec) - SERVICE_KEYS
        if unknown:
            sys.exit(f"service {name}: unsupported keys {sorted(unknown)}")
        image = spec["image"]
        if "build" in spec and image not in built:
            build = spec["build"]
            podman("build", "--pull=missing", "-t", image, "-f",
                   f"{build['context']}/{build.get('dockerfile', 'Dockerfile')}", build["context"])
            built.add(image)
        args = ["run", "-d", "--name", f"{project}_{name}_1"]
        mode = spec.get("network_mode")
        if mode:
            if not mode.startswith("service:"):
                sys.exit(f"service {name}: network_mode {mode} is not service:NAME")
            args += ["--network", f"container:{project}_{mode.split(':', 1)[1]}_1"]
        for net, options in (spec.get("networks") or {}).items():
            address = (options or {}).get("ipv4_address")
            args += ["--network", f"{project}_{net}" + (f":ip={address}" if address else "")]
        for server in spec.get("dns", []):
            args += ["--dns", server]
        for cap in spec.get("cap_add", []):
            args += ["--cap-add", cap]
        for volume in spec.get("volumes", []):
            args += ["--volume", volume]
        if "entrypoint" in spec:
            entry = spec["entrypoint"]
            args += ["--entrypoint", json.dumps(entry) if isinstance(entry, list) else entry]
        command = spec.get("command", [])
        podman(*args, image, *(command if isinstance(command, list) else ["sh", "-c", command]))


def down(project, config):
    for name in reversed(order(config["services"])):
        podman("rm", "-f", "-t", "2", f"{project}_{name}_1", check=False)
    for name in config.get("networks") or {}:
        podman("network", "rm", "-f", f"{project}_{name}", check=False)


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in ("up", "down"):
        sys.exit(__doc__)
    action, project = sys.argv[1], sys.argv[2]
    file = sys.argv[3] if len(sys.argv) == 4 else f"{sys.path[0]}/compose.yaml"
    normalised = subprocess.run(["docker-compose", "-f", file, "-p", project, "config"],
                                check=True, capture_output=True, text=True).stdout
    config = yaml.safe_load(normalised)
    (up if action == "up" else down)(project, config)


if __name__ == "__main__":
    main()
