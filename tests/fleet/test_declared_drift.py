"""Every item the roles declare, changed on a converged host the way a person or time would.

Each role publishes what it manages on a host as data (its `declaration` entry point: the one declaration that its
look compares and its steps make). This test reads those declarations from the lab hosts
(tests/fleet/playbooks/declarations.yml), changes every item of them on the hosts (a file edited, chmod, chown,
deleted or replaced by a symlink; a link pointed elsewhere; a path that must be absent made; a unit stopped or
disabled; a user's shell changed; a package removed; a certificate brought into its renewal window; a model removed, a
stray one added), then:

1. site.yml in check mode reports a change on each host and names every changed item (each role says what differs);
2. the real run changes the same hosts, and afterwards every host matches its declarations again;
3. the next run changes nothing.

The items come from the declarations themselves, so an item a role adds is changed here without a new test. Each
round gives every item one change, a different kind in each round, so that no two changes hit one item at once; the
symlinks point at decoy files that must be left as they were. Runs on lab1 (a workstation, bookworm) and lab2 (a GPU
server, trixie, hardened), converged by test_site.py or here: lab3 is a workstation on bookworm as lab1 is, with the
same declarations, and changing it too added a third of the test's time and no item.
"""
import json
import shlex
import tempfile
from pathlib import Path

import pytest

from tests.lab.paths import LAB_STATE

SITE = ["lab1", "lab2"]
LIMIT = ",".join(SITE)
DECLARATIONS = Path(__file__).parent / "playbooks" / "declarations.yml"
# the site with a purge, so that a stray model is drift too (the lab's lists hold every model the hosts have)
EXTRA = {"ollama_models_purge": True}
# Two rounds: every item is changed in each (some wait for a round that leaves the server running), every kind of
# change is made; each round is a check-mode run, a real run and a re-run of site.yml on three hosts.
ROUNDS = 2
DECOY = "/var/tmp/llmops-decoy"


def read_declarations(lab):
    """{host: {"declared": {role: parts}, "roles": {role: {"drift": ..., "converged": ...}}}} for the site's hosts."""
    folder = tempfile.mkdtemp(prefix="declarations-")
    run = lab.playbook(DECLARATIONS, limit=LIMIT, extra_vars=dict(EXTRA, declarations_dir=folder))
    assert run.rc == 0, run.output[-4000:]
    return dict((host, json.loads((Path(folder) / ("%s.json" % host)).read_text())) for host in SITE)


def drift_of(found):
    return dict((role, r["drift"]) for role, r in found["roles"].items() if r["drift"])


def path_kinds(item, read):
    """The changes that apply to one path the declaration names, in the order rounds take them."""
    kind = item.get("type", "file")
    if kind == "absent":
        return ["create"]
    if kind == "link":
        return ["retarget", "delete"]
    kinds = []
    if kind == "file":
        if item.get("cert_valid_for"):
            kinds.append("expire")
        elif item.get("sha256") or item.get("lines") or item["path"] in read:
            kinds.append("edit")
    if item.get("mode"):
        kinds.append("chmod")
    if item.get("owner"):
        kinds.append("chown")
    if kind == "file":
        kinds.append("delete")
        # a link a user puts in place of a file in their own Codex home is never written through: the codex role
        # refuses it, names it and fails the host (tests/integration/test_codex_user_paths.py); elsewhere it is
        # replaced
        if not item["path"].startswith("~"):
            kinds.append("symlink")
    return kinds


def items(declared):
    """Every item of a host's declarations that a person or time can change: (label, kind list, item, part, role).

    The label is how a role's message names the item. What cannot be changed on a lab host is left out and counted
    by the caller: a GPU check (the lab has no GPU), the server's version (it follows the links, which are items), a
    group the service user has as its primary group, and what is only read (the accounts, the server's models
    Codex's catalog is made from)."""
    found = []
    for role, parts in sorted(declared.items()):
        for name, part in sorted(parts.items()):
            read = set(part.get("read") or [])
            for item in part.get("paths") or []:
                found.append((item["path"], path_kinds(item, read), item, name, role))
            for unit in part.get("units") or []:
                found.append(("unit %s" % unit["name"], ["disable", "stop"], unit, name, role))
            for user in part.get("users") or []:
                if "shell" in user:
                    found.append(("user %s" % user["name"], ["shell"], user, name, role))
            for package in part.get("packages") or []:
                found.append(("package %s" % package, ["remove"], {"name": package}, name, role))
            server = part.get("server") or {}
            for model in server.get("models") or []:
                model_name = model if isinstance(model, str) else model["name"]
                if (model if isinstance(model, str) else model.get("state", "present")) != "absent":
                    found.append(("model %s" % model_name, ["remove-model"], {"name": model_name}, name, role))
            if server.get("purge"):
                found.append(("not listed (purge)", ["stray-model"], {}, name, role))
    return found


# What is read from the server (its models, and Codex's catalog made of them) cannot be told while the server is
# stopped, in check mode too: those changes wait for a round that leaves the server running.
NEEDS_THE_SERVER = (("models", "models"), ("codex", "catalog"))


def plan(declared, round_index):
    """{label: (kind, item)} for one round. The first round gives each item its first kind of change (what time or a
    person does most: an edit, an expiry, a stopped service, a removed model); the second one of its others, taken
    in turn across the items, so that every kind is made somewhere."""
    chosen, parts = {}, {}
    for number, (label, kinds, item, part, role) in enumerate(items(declared)):
        if label in chosen:  # an item two parts declare (the codex system folder) is changed once
            continue
        others = kinds[1:] or kinds
        chosen[label] = (kinds[0] if round_index == 0 else others[number % len(others)], item)
        parts[label] = (role, part)
    if chosen.get("unit ollama", ("",))[0] == "stop":
        chosen = dict((label, c) for label, c in chosen.items() if parts[label] not in NEEDS_THE_SERVER)
    return chosen


def shell_for(kind, item, home):
    """The shell command that makes one change on the host."""
    path = item.get("path", "")
    if path.startswith("~"):
        user, _sep, rest = path[1:].partition("/")
        path = home[user] + "/" + rest
    q = shlex.quote(path)
    if kind == "edit":
        prefix = (item.get("lines") or [{}])[0].get("prefix")
        return "printf '%%s\\n' %s >> %s" % (shlex.quote((prefix or "# changed by hand ") + "drift"), q)
    if kind == "expire":  # the same key, signed again by the host's CA for one day: inside any renewal window
        folder = shlex.quote(str(Path(path).parent))
        return ("cd %s && openssl x509 -x509toreq -in %s -signkey server.key -out /tmp/renew.csr 2>/dev/null"
                " && openssl x509 -req -in /tmp/renew.csr -CA ca.crt -CAkey ca.key -set_serial 7 -days 1 -out %s"
                " 2>/dev/null && rm -f /tmp/renew.csr" % (folder, q, q))
    if kind == "chmod":
        return "chmod %s %s" % ("0711" if item.get("type") == "directory" else "0604", q)
    if kind == "chown":
        return "chown nobody:nogroup %s" % q
    if kind == "delete":
        return "rm -f %s" % q
    if kind == "symlink":
        decoy = "%s/%s" % (DECOY, path.strip("/").replace("/", "_"))
        return "printf 'decoy\\n' > %s && ln -sfn %s %s" % (shlex.quote(decoy), shlex.quote(decoy), q)
    if kind == "retarget":
        return "ln -sfn /nonexistent-drift %s" % q
    if kind == "create":
        return "mkdir -p %s && touch %s" % (shlex.quote(str(Path(path).parent)), q)
    if kind == "stop":
        return "systemctl stop %s" % shlex.quote(item["name"])
    if kind == "disable":
        return "systemctl disable -q %s" % shlex.quote(item["name"])
    if kind == "shell":
        return "usermod -s /bin/sh %s" % shlex.quote(item["name"])
    if kind == "remove":
        return "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q %s >/dev/null" % shlex.quote(item["name"])
    if kind == "remove-model":
        return ("curl -fsS -X DELETE http://127.0.0.1:11434/api/delete -d %s"
                % shlex.quote(json.dumps({"model": item["name"]})))
    if kind == "stray-model":
        return ("curl -fsS http://127.0.0.1:11434/api/tags | python3 -c 'import json,sys; print(json.load(sys.stdin)"
                "[\"models\"][0][\"name\"])' | xargs -I{} curl -fsS http://127.0.0.1:11434/api/copy"
                " -d '{\"source\": \"{}\", \"destination\": \"stray/drift:latest\"}'")
    raise AssertionError("no change for %s" % kind)


# Changes made before the others, and after them: a certificate is signed again while its CA key is there; a stray
# model is copied from a listed one before those are removed, while the server runs; units are stopped and packages
# removed last.
ORDER = ["expire", "stray-model", "remove-model", "edit", "chmod", "chown", "retarget", "create", "symlink",
         "delete", "shell", "disable", "stop", "remove"]


def change(lab, host, planned, home):
    """Make one round's changes on the host, in ORDER, in one shell."""
    steps = sorted(planned.values(), key=lambda kind_item: ORDER.index(kind_item[0]))
    script = ["set -eo pipefail", "mkdir -p %s" % DECOY] + [shell_for(kind, item, home) for kind, item in steps]
    lab.ssh(host, "bash -c %s" % shlex.quote("\n".join(script)))


def decoys(lab, host):
    return lab.ssh(host, "cat %s/* 2>/dev/null | sort | uniq -c" % DECOY, check=False).strip()


@pytest.fixture(scope="module")
def site(lab):
    run = lab.playbook("site.yml", limit=LIMIT, extra_vars=EXTRA)
    assert run.rc == 0, run.output[-5000:]
    return lab


def test_every_declared_item_changed_is_seen_repaired_and_then_left_alone(site):
    declared = read_declarations(site)
    for host in SITE:
        assert drift_of(declared[host]) == {}, (host, drift_of(declared[host]))
    homes = dict((host, dict(line.split(":")[0:6:5] for line in site.ssh(host, "getent passwd").splitlines()))
                 for host in SITE)
    totals = dict(changed=0, seen=0, repaired=0)
    kinds_used = set()
    for round_index in range(ROUNDS):
        plans = dict((host, plan(declared[host]["declared"], round_index)) for host in SITE)
        for host in SITE:
            change(site, host, plans[host], homes[host])
            kinds_used.update(kind for kind, _item in plans[host].values())
        changed = sum(len(p) for p in plans.values())
        before = dict((host, decoys(site, host)) for host in SITE)

        check = site.playbook("site.yml", limit=LIMIT, extra_vars=EXTRA, check=True, diff=True)
        assert check.rc == 0, check.output[-6000:]
        unseen = dict((host, sorted(label for label in plans[host] if label not in _said(check.output, host)))
                      for host in SITE)
        seen = changed - sum(len(labels) for labels in unseen.values())
        assert all(c > 0 for c in check.changed().values()), check.changed()
        assert unseen == dict((host, []) for host in SITE), "check mode did not name: %s" % unseen

        run = site.playbook("site.yml", limit=LIMIT, extra_vars=EXTRA)
        assert run.rc == 0, run.output[-6000:]
        assert dict((h, c > 0) for h, c in run.changed().items()) == dict((h, c > 0) for h, c in check.changed().items())
        after = read_declarations(site)
        left = dict((host, drift_of(after[host])) for host in SITE if drift_of(after[host]))
        repaired = changed - sum(1 for host in left for label in plans[host] if label in json.dumps(left[host]))
        assert left == {}, "not repaired: %s" % left
        # a renewed certificate is the one nginx serves (reloaded by the proxy role's handler at the play's end)
        for host in SITE:
            for kind, item in plans[host].values():
                if kind == "expire":
                    assert served_certificate(site, host) == certificate(site, host, item["path"]), (host, item)
        assert dict((host, decoys(site, host)) for host in SITE) == before, "a symlink was written through"

        again = site.playbook("site.yml", limit=LIMIT, extra_vars=EXTRA)
        assert again.rc == 0 and again.changed() == dict((h, 0) for h in SITE), again.output[-4000:]
        for key, value in (("changed", changed), ("seen", seen), ("repaired", repaired)):
            totals[key] += value
        print("round %d: %d items changed (%s), %d seen in check mode, %d repaired; site.yml check %.0fs, run %.0fs,"
              " re-run %.0fs" % (round_index + 1, changed, ", ".join(sorted(kinds_used)), seen, repaired,
                                 check.seconds, run.seconds, again.seconds))
    every = set(kind for host in SITE for _l, kinds, _i, _p, _r in items(declared[host]["declared"]) for kind in kinds)
    assert kinds_used == every, "kinds of change never made: %s" % sorted(every - kinds_used)
    print("%(changed)d items changed, %(seen)d seen in check mode, %(repaired)d repaired" % totals)
    with open(LAB_STATE / "measurements.txt", "a") as out:
        out.write("declared drift: %(changed)d items changed, %(seen)d seen in check mode, %(repaired)d repaired\n"
                  % totals)


def certificate(lab, host, path):
    return lab.ssh(host, "openssl x509 -noout -fingerprint -sha256 -in %s" % shlex.quote(path)).strip()


def served_certificate(lab, host, port=11443):
    return lab.ssh(host, "echo | openssl s_client -connect 127.0.0.1:%d 2>/dev/null | openssl x509 -noout "
                         "-fingerprint -sha256" % port).strip()


def _said(output, host):
    """What the roles said differs on `host`, in a run's output (the 'Say what differs' tasks), as one text."""
    said, current = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            current = "differs" in line
        elif current and line.startswith(("ok: [%s]" % host, "changed: [%s]" % host)):
            said.append(line)
        elif current and said and line.startswith(" "):
            said.append(line)
    return "\n".join(said)
