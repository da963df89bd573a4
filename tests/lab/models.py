"""The lab's models, made by the harness and pushed to the lab registry over the Distribution API.

Two kinds, both real Ollama images under a Docker v2 manifest, laid out as `ollama create` + `ollama push` lay them
out (a config blob `application/vnd.docker.container.image.v1+json`, then the layers):

- real models (`reply` set): a tiny llama-architecture GGUF that runs (tests/lab/tiny_gguf.py) and answers every
  prompt with its scripted reply, a template that renders tools (Codex sends them; a template without `.Tools`
  makes Ollama refuse tool requests) and a params layer. `ollama run`, `/api/generate` and `codex exec` print the
  reply. Version 2 of a tag answers with another reply, so a moved tag shows in the answer.
- the tool model (`answer` a list of pieces, TOOL_ANSWER): the same tiny GGUF answering a call of the tool
  `report_ready` ({"name": "report_ready", "arguments": {}}), which Ollama's /api/chat returns as
  `message.tool_calls` when the request offers that tool (the template mentions .Tools). Not in the catalogue: the
  readiness gate's test (tests/integration/test_ready.py) pushes it.
- synthetic models (`size` set): a GGUF header then deterministic filler, of any size, for pulls, progress and
  bandwidth; they cannot be loaded.

The same name and version always give the same bytes, so digests are stable between runs. Pushing version 2 over a
tag is how tests make "the registry tag moved".
"""
import hashlib
import json
import os
import struct
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from tests.lab import tiny_gguf

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"

# The lab's catalogue: repository (namespace/model), tag, and the size of the model layer in bytes for a synthetic
# model, or REAL for a model that runs (its reply: reply()).
REAL = None
CATALOGUE = (
    ("lab/tiny", "latest", REAL),
    ("lab/tiny", "1b", REAL),
    ("lab/small", "latest", 3 << 20),
    ("lab/moving", "latest", REAL),  # tests push version 2 over it
)
# What a real model's template renders: the system prompt, the tools, the conversation, then the turn to answer.
TEMPLATE = (b"{{- if .System }}SYSTEM: {{ .System }}\n{{ end }}"
            b"{{- if .Tools }}TOOLS:{{ range .Tools }} {{ .Function.Name }}{{ end }}\n{{ end }}"
            b"{{- range .Messages }}{{ if eq .Role \"user\" }}USER: {{ .Content }}\n"
            b"{{ else if eq .Role \"assistant\" }}ASSISTANT: {{ .Content }}\n{{ end }}{{ end }}ASSISTANT:")
# No num_ctx: the context is the server's (OLLAMA_CONTEXT_LENGTH, the server role's ollama_server_context_length), as
# with most published models. One thread keeps a busy 2-core machine quick.
PARAMS = {"num_predict": 64, "num_thread": 1, "stop": ["</s>"]}
# The tool model's answer, as explicit pieces (a JSON object repeats `"`, so it cannot be split into word pieces).
TOOL_ANSWER = list(tiny_gguf.TOOL_CALL_PIECES)


def reply(repo, tag, version=1):
    """The scripted answer of a real model: ' Hello from tiny!' (lab/tiny:latest), ' Hello from tiny 1b!',
    and for version 2 and later of a tag ' Hello from tiny v2!'."""
    words = ["Hello", "from", repo.rsplit("/", 1)[-1]]
    if tag != "latest":
        words.append(tag)
    if version > 1:
        words.append("v%d" % version)
    return " " + " ".join(words) + "!"


def _gguf(name, version, size):
    """A GGUF v3 header with a few metadata keys, padded to `size` with bytes derived from the name."""
    def kv_string(key, value):
        k, v = key.encode(), value.encode()
        return struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", len(v)) + v

    kvs = [kv_string("general.architecture", "llama"), kv_string("general.name", "%s-v%d" % (name, version))]
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)
    seed = hashlib.sha256(("%s:%d" % (name, version)).encode()).digest()
    filler = bytearray()
    block = seed
    while len(head) + len(filler) < size:
        block = hashlib.sha256(block).digest()
        filler += block * 64
    return (head + bytes(filler))[:max(size, len(head))]


def _spoken(answer):
    """tiny_gguf's arguments for a model answering `answer`: a reply string, or the explicit pieces (a list)."""
    return dict(pieces=answer) if isinstance(answer, list) else dict(reply=answer)


def _real_gguf(answer):
    """The tiny GGUF answering `answer`: a string, or a list of explicit pieces (the tool model)."""
    fd, path = tempfile.mkstemp(suffix=".gguf")
    os.close(fd)
    try:
        tiny_gguf.write(path, **_spoken(answer))
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def _go_json(value):
    """JSON as Go's json.Encoder writes it (what Ollama stores): compact, <, > and & escaped, a final newline."""
    text = json.dumps(value, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n").encode()


def _human(n):
    """Ollama's format.HumanNumber: 280640 -> 281K."""
    for unit, scale in (("B", 10 ** 9), ("M", 10 ** 6), ("K", 10 ** 3)):
        if n >= scale:
            value = n / float(scale)
            return ("%.0f%s" if value >= 100 else "%.1f%s" if value >= 10 else "%.2f%s") % (value, unit)
    return str(n)


def build(name, version=1, size=1 << 20, answer=None):
    """Return (manifest bytes, {digest: blob bytes}): a real model answering `answer` (a string, or the list of
    pieces of the tool model), else a synthetic one.

    A real model's config is what `ollama create` writes for a GGUF (0.34); a synthetic one keeps the older form
    with rootfs.diff_ids, which Ollama reads as well."""
    if answer:
        layers = [("application/vnd.ollama.image.model", _real_gguf(answer)),
                  ("application/vnd.ollama.image.template", TEMPLATE),
                  ("application/vnd.ollama.image.params", _go_json(PARAMS))]
        config = _go_json({"model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
                           "model_type": _human(tiny_gguf.parameter_count(**_spoken(answer))), "file_type": "F32"})
    else:
        layers = [("application/vnd.ollama.image.model", _gguf(name, version, size)),
                  ("application/vnd.ollama.image.template", b"{{ .Prompt }}")]
        diff_ids = ["sha256:" + hashlib.sha256(data).hexdigest() for _media_type, data in layers]
        config = json.dumps({
            "model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
            "model_type": "%dM" % max(1, size >> 20), "file_type": "Q4_0",
            "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }, separators=(",", ":")).encode()
    blobs = {}

    def descriptor(media_type, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, config),
        "layers": [descriptor(t, b) for t, b in layers],
    }
    return json.dumps(manifest, separators=(",", ":")).encode(), blobs


def _request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return urllib.request.urlopen(req, timeout=60)


def push(registry_url, repo, tag, manifest, blobs):
    """Push blobs (monolithic uploads) then the manifest. Returns the manifest digest."""
    for digest, data in blobs.items():
        try:
            _request("HEAD", "%s/v2/%s/blobs/%s" % (registry_url, repo, digest)).close()
            continue  # already there
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        with _request("POST", "%s/v2/%s/blobs/uploads/" % (registry_url, repo), b"") as resp:
            location = resp.headers["Location"]
        location = urllib.parse.urljoin(registry_url + "/", location)
        sep = "&" if "?" in location else "?"
        _request("PUT", location + sep + "digest=" + digest, data,
                 {"Content-Type": "application/octet-stream"}).close()
    _request("PUT", "%s/v2/%s/manifests/%s" % (registry_url, repo, tag), manifest,
             {"Content-Type": MANIFEST_TYPE}).close()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def push_model(registry_url, repo, tag, version=1, size=1 << 20, real=False):
    """Push a model (real: one that runs and answers reply(repo, tag, version)). Returns its manifest digest."""
    manifest, blobs = build("%s:%s" % (repo, tag), version, size, reply(repo, tag, version) if real else None)
    return push(registry_url, repo, tag, manifest, blobs)


def seed(registry_url, catalogue=CATALOGUE):
    """Push the catalogue at version 1; returns {"repo:tag": manifest digest}."""
    return {"%s:%s" % (repo, tag): push_model(registry_url, repo, tag, 1, size or 0, real=size is REAL)
            for repo, tag, size in catalogue}


def main(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="python3 -m tests.lab.models")
    sub = parser.add_subparsers(dest="cmd", required=True)
    push_cmd = sub.add_parser("push", help="push one synthetic model; prints its manifest digest (hex)")
    push_cmd.add_argument("registry_url")
    push_cmd.add_argument("repo")
    push_cmd.add_argument("tag")
    push_cmd.add_argument("--version", type=int, default=1)
    push_cmd.add_argument("--size", type=int, default=1 << 20)
    push_cmd.add_argument("--real", action="store_true", help="a model that runs and answers its scripted reply")
    seed_cmd = sub.add_parser("seed", help="push the lab catalogue")
    seed_cmd.add_argument("registry_url")
    args = parser.parse_args(argv)
    if args.cmd == "push":
        print(push_model(args.registry_url, args.repo, args.tag, args.version, args.size, args.real).split(":", 1)[1])
    else:
        for name, digest in seed(args.registry_url).items():
            print(name, digest)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
