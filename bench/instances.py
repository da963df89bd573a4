"""Requests per second through the proxy with one and with two Ollama servers on one host (ollama_server_instances).

    python3 -m bench.instances [--requests 400] [--concurrency 8] [--tokens 64] [--rounds 3]

On the lab's GPU server (lab2, the gpu_servers playbook: the models role, nginx with TLS and a bearer token in front),
converged with ollama_server_instances 1, then 2, then 1 again (alternated `--rounds` times), the controller sends
`--requests` generate requests of the lab's tiny model (a real GGUF, `--tokens` tokens each) through the proxy,
`--concurrency` at once, after one request per server to load the model. Measured: requests per second and generated
tokens per second of each way, which server answered each request (nginx's log), and the ratio of two servers to
one. The lab has no GPU: both servers share the machine's CPU cores, so this measures the balancing's cost and spread,
not what a second GPU adds. The host is the tests' own: run it on a fleet no test is using.
"""
import argparse
import concurrent.futures
import json
import ssl
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.report import machine, write_section
from tests.lab import fleet, services
from tests.lab.__main__ import up as lab_up
from tests.lab.ansible_run import run_playbook
from tests.lab.paths import REPO

HERE = REPO / "bench"
HOST = "lab2"
LOG = "/var/log/nginx/ollama-proxy.access.log"


def ssh(ip, command):
    proc = fleet.ssh(ip, command, timeout=120)
    if proc.returncode:
        raise SystemExit("%s: %s\n%s%s" % (ip, command, proc.stdout, proc.stderr))
    return proc.stdout


def converge(instances):
    run = run_playbook(REPO / "playbooks" / "gpu_servers.yml", fleet.inventory_path(),
                       extra_vars={"ollama_server_instances": instances}, args=["--limit", HOST])
    if run.rc != 0:
        raise SystemExit("gpu_servers.yml with %d instance(s) failed:\n%s" % (instances, run.output[-3000:]))


def load(url, token, context, body, count, concurrency):
    """Send `count` requests, `concurrency` at once; returns (seconds, generated tokens)."""
    def one(_i):
        request = urllib.request.Request(url + "/api/generate", data=body, method="POST",
                                         headers={"Authorization": "Bearer " + token,
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=context, timeout=300) as resp:
            return json.loads(resp.read()).get("eval_count", 0)

    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, range(count)))
    return time.time() - started, tokens


def measure(ip, url, token, context, body, args, instances):
    converge(instances)
    # one request per server loads the model in each (nginx sends them to the servers in turn)
    load(url, token, context, body, instances, 1)
    ssh(ip, "truncate -s 0 %s" % LOG)
    seconds, tokens = load(url, token, context, body, args.requests, args.concurrency)
    log = ssh(ip, "cat %s" % LOG)
    upstreams = [line.rsplit("upstream=", 1)[1].strip() for line in log.splitlines() if "upstream=" in line]
    spread = dict((u, upstreams.count(u)) for u in sorted(set(upstreams)))
    print("  %d server(s): %d requests in %.2f s: %.2f requests/s, %.1f tokens/s; answered by %s"
          % (instances, args.requests, seconds, args.requests / seconds, tokens / seconds, spread), flush=True)
    return args.requests / seconds, tokens / seconds, spread


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m bench.instances")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=str(HERE / "results.md"))
    args = parser.parse_args(argv)

    hosts = lab_up(3)
    ip = dict((h["name"], h["ip"]) for h in hosts)[HOST]
    site = json.loads(services.INFO.read_text())
    token = (fleet.inventory_path().parent / "group_vars" / "all" / "lab.yml").read_text().split(
        "lab_proxy_token: ")[1].split("\n")[0].strip('"')
    converge(1)
    with tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False) as ca:
        ca.write(ssh(ip, "cat /etc/ollama-proxy/tls/ca.crt"))
    context = ssl.create_default_context(cafile=ca.name)
    url = "https://%s:11443" % ip
    model = "%s/lab/tiny:latest" % site["registry"]
    body = json.dumps({"model": model, "prompt": "Write a short poem about the sea.", "stream": False,
                       "options": {"num_predict": args.tokens}}).encode()
    samples = {1: [], 2: []}
    for number in range(args.rounds):
        for instances in ((1, 2) if number % 2 == 0 else (2, 1)):
            samples[instances].append(measure(ip, url, token, context, body, args, instances))
    converge(1)
    Path(ca.name).unlink()
    med = dict((n, (statistics.median(s[0] for s in samples[n]), statistics.median(s[1] for s in samples[n])))
               for n in samples)
    lines = ["## Servers per host behind the proxy", "",
             "`python3 -m bench.instances --requests %d --concurrency %d --tokens %d --rounds %d` on %s; %s." % (
                 args.requests, args.concurrency, args.tokens, args.rounds, machine(), time.strftime("%Y-%m-%d")), "",
             "The lab's GPU server (lab2, no GPU) converged with `ollama_server_instances` 1 and 2 (alternated), "
             "`OLLAMA_NUM_PARALLEL` 2 each; the lab's tiny GGUF model, whose answers are a few tokens long (%.1f "
             "per request), so each request's own cost dominates; requests sent by the controller through nginx "
             "(TLS, bearer token, `least_conn`). Medians of %d rounds. Both servers share the same CPU cores here: "
             "the figure is the balancing's cost and spread, not what a second GPU adds (untested: the lab has no "
             "GPU)." % (med[1][1] / med[1][0], args.rounds), "",
             "| servers | requests/s | tokens/s | answered by (last round) | vs one server (requests/s) |",
             "| --- | --- | --- | --- | --- |"]
    for n in (1, 2):
        lines.append("| %d | %.2f | %.1f | %s | %.2f |" % (
            n, med[n][0], med[n][1], ", ".join("%s: %d" % item for item in samples[n][-1][2].items()),
            med[n][0] / med[1][0]))
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.output, "instances", text)


if __name__ == "__main__":
    main()
