"""playbooks/ci.yml's readiness gate on the lab fleet: a server that answers /api/version is not enough, the model
Codex uses must answer a real chat (tasks/ready.yml, llmops.ollama.ollama_ready).

lab3's model is broken on disk the way a failed disk or a bad copy breaks one: its GGUF blob cut in half, the model
unloaded, after a first ci.yml has converged both hosts and passed. The server still lists the model and answers its
version, so the old check passed; the gate fails lab3 with the server's own error, and lab1 (whose model answers)
passes and prints its tokens per second. With the blob put back, the next ci.yml passes on both and changes nothing.
(The lab's Codex model cannot call tools, so the lab's gate asks for an answer only: tests/lab/group_vars/all.yml;
the tool call is proven against a real server in tests/integration/test_ready.py.)
"""
import json
import re
import shlex

HOSTS = ["lab1", "lab3"]
BROKEN = "lab3"


def api_post(path, body):
    return "curl -fsS http://127.0.0.1:11434%s -d %s" % (path, shlex.quote(json.dumps(body)))


def model_blob(lab, host, model):
    """The path of the model's GGUF blob on the host, from the server's own modelfile (its FROM line)."""
    shown = json.loads(lab.ssh(host, api_post("/api/show", {"model": model})))
    return [line.split(" ", 1)[1] for line in shown["modelfile"].splitlines() if line.startswith("FROM /")][0]


def test_a_host_whose_model_cannot_answer_fails_the_gate_with_the_servers_reason(lab):
    model = "%s/lab/tiny:latest" % lab.site["registry"]
    # ci.yml converges the hosts first (bare ones too: the suite may run this before test_site.py) and both pass
    first = lab.playbook("ci.yml", limit=",".join(HOSTS))
    assert first.rc == 0 and all(first.stats[h]["failed"] == 0 for h in HOSTS), first.output[-6000:]
    blob = model_blob(lab, BROKEN, model)
    backup = "/root/ci-gate-blob.bak"
    lab.ssh(BROKEN, "%s >/dev/null && cp -p %s %s && truncate -s $(( $(stat -c %%s %s) / 2 )) %s"
            % (api_post("/api/generate", {"model": model, "keep_alive": 0}), shlex.quote(blob), backup,
               shlex.quote(blob), shlex.quote(blob)))
    try:
        assert json.loads(lab.ssh(BROKEN, "curl -fsS http://127.0.0.1:11434/api/version"))["version"]
        run = lab.playbook("ci.yml", limit=",".join(HOSTS))
        assert run.rc != 0, run.output[-6000:]
        assert run.stats[BROKEN]["failed"] == 1 and run.stats["lab1"]["failed"] == 0, run.stats
        failed = [line for line in run.output.splitlines() if line.startswith("fatal: [%s]" % BROKEN)]
        assert failed and "the server answered HTTP 500" in failed[0], failed or run.output[-6000:]
        assert "exceeds file size" in failed[0] or "GGUF" in failed[0], failed[0]
        speed = re.search(r"%s: ([0-9.]+) tokens/s on the cpu" % re.escape(model), run.output)
        assert speed and float(speed.group(1)) > 0, run.output[-4000:]
        said = json.loads(failed[0].split("=> ", 1)[1])["msg"]
        print("ci.yml gate: lab1 answered at %s tokens/s; lab3 refused: %s" % (speed.group(1), said[:300]))
    finally:
        lab.ssh(BROKEN, "cp -p %s %s && rm -f %s" % (backup, shlex.quote(blob), backup))
    again = lab.playbook("ci.yml", limit=",".join(HOSTS))
    assert again.rc == 0 and all(again.stats[h]["failed"] == 0 for h in HOSTS), again.output[-6000:]
    assert again.changed() == dict((h, 0) for h in HOSTS), again.changed()
