# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a unit's drop-ins set, read as systemd reads them (systemd.unit(5), systemd.exec(5)).

A drop-in of someone else's (`systemctl edit ollama` writes override.conf) can set what a role declares for the unit:
an ``Environment=`` assignment in a drop-in applied after the role's own wins over the role's value, an empty
``Environment=`` drops every assignment before it, ``EnvironmentFile=`` (wherever it is) wins over every
``Environment=``, and a later ``User=`` or ``Group=`` runs the service as another account. ``takeovers`` says which
drop-ins do that, and what they set, so that a role can name them before it changes anything.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex

# What a takeover may show of the values it sets: addresses and folders, never a value that could be a secret
# (HTTPS_PROXY may hold a password).
SHOWN = ("OLLAMA_HOST", "OLLAMA_MODELS", "User", "Group")


def _logical_lines(text):
    """The lines of a unit file, continuation lines (a trailing backslash) joined, comments left out."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def service_settings(text):
    """[(key, value)] of the [Service] section of a unit file or drop-in, in order."""
    section, out = None, []
    for line in _logical_lines(text):
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section == "Service" and "=" in line:
            key, value = line.split("=", 1)
            out.append((key.strip(), value.strip()))
    return out


def assignments(value):
    """{NAME: value} of one Environment= value ("A=1" "B=two words" C=3), quotes as systemd takes them."""
    try:
        words = shlex.split(value, posix=True)
    except ValueError:
        words = value.split()
    return dict(word.split("=", 1) for word in words if "=" in word and word.split("=", 1)[0])


def environment(text):
    """{NAME: value} that the Environment= lines of `text` set, the later assignment winning."""
    env = {}
    for key, value in service_settings(text):
        if key == "Environment":
            if not value:
                env = {}
            env.update(assignments(value))
    return env


def _environment_file(value):
    """{NAME: value} of an EnvironmentFile= (a leading '-' means a missing file is fine); None if unreadable."""
    path = value[1:] if value.startswith("-") else value
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return None
    env = {}
    for line in _logical_lines(text):
        if "=" in line:
            name, val = line.split("=", 1)
            name = name.strip()
            if name.startswith("export "):
                name = name[len("export "):].strip()
            env[name] = val.strip().strip("'\"")
    return env


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return None


def takeovers(dropins, own, declared_env, user=None, group=None):
    """The drop-ins in `dropins` (systemd's DropInPaths, in the order it applies them) that are not in `own` and set
    what the role declares: [{"path", "settings": [names], "shown": {name: value of SHOWN names}}].

    `own` are the role's drop-ins, the one holding its environment first: systemd applies drop-ins in the order of
    their file names, whatever their folder, so a foreign Environment= counts where its name sorts after that one."""
    own = [p for p in own if p]
    env_name = os.path.basename(own[0]) if own else ""
    found = []
    for path in dropins:
        if path in own:
            continue
        text = _read(path)
        if text is None:
            found.append({"path": path, "settings": ["(unreadable)"], "shown": {}})
            continue
        after_own = os.path.basename(path) > env_name
        sets, values = [], {}
        for key, value in service_settings(text):
            env = None
            if key == "Environment" and after_own:
                env = assignments(value) if value else dict.fromkeys(declared_env)  # empty: every one dropped
            elif key == "EnvironmentFile" and value:
                env = _environment_file(value)
                if env is None:  # unreadable here: it may set any of them
                    env = dict.fromkeys(declared_env)
            for name, val in (env or {}).items():
                if name not in declared_env or val == declared_env[name]:
                    continue
                if name not in sets:
                    sets.append(name)
                if name in SHOWN and val is not None:
                    values[name] = val
            if (key == "User" and user and value != user) or (key == "Group" and group and value != group):
                if key not in sets:
                    sets.append(key)
                values[key] = value
        if sets:
            found.append({"path": path, "settings": sets, "shown": values})
    return found


def server_units(run_command):
    """The Ollama servers systemd runs on this host: ollama.service and the instances of ollama@.service, each
    {unit, active, host}, host being its OLLAMA_HOST ("" when unset: Ollama's default). [] without systemctl."""
    try:
        rc, out, _err = run_command(["systemctl", "list-units", "--all", "--plain", "--no-legend", "--full",
                                     "ollama.service", "ollama@*.service"])
    except (OSError, IOError):
        return []
    if rc != 0:
        return []
    names = [line.split()[0] for line in out.splitlines() if line.split()]
    names = sorted((n for n in names if n == "ollama.service" or (n.startswith("ollama@") and n.endswith(".service"))),
                   key=lambda n: (n != "ollama.service", len(n), n))
    found = []
    for name in names:
        rc, out, _err = run_command(["systemctl", "show", "-p", "ActiveState", "-p", "Environment", "--", name])
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line) if rc == 0 else {}
        env = assignments(props.get("Environment", ""))
        found.append(dict(unit=name, active=props.get("ActiveState") == "active", host=env.get("OLLAMA_HOST", "")))
    return found
