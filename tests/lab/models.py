"""Small synthetic models, made by the harness and pushed to the lab registry over the Distribution API.

Each model is a real Ollama image: a config blob (`application/vnd.docker.container.image.v1+json`), a
model layer (`application/vnd.ollama.image.model`: a GGUF header then deterministic filler) and a
template layer, under a Docker v2 manifest. The same name and version always give the same bytes, so the
digests are stable between runs. `version` changes the model layer: pushing version 2 over a tag is how
tests make "the registry tag moved".
"""
import hashlib
import json
import struct
import urllib.error
import urllib.parse
import urllib.request

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"

# The lab's catalogue: repository (namespace/model), tag, size of the model layer in bytes.
CATALOGUE = (
    ("lab/tiny", "latest", 1 << 20),
    ("lab/tiny", "1b", 2 << 20),
    ("lab/small", "latest", 3 << 20),
    ("lab/moving", "latest", 1 << 20),  # tests push version 2 over it
)


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


def build(name, version=1, size=1 << 20):
    """Return (manifest bytes, {digest: blob bytes}) for a synthetic model."""
    model = _gguf(name, version, size)
    template = b"{{ .Prompt }}"
    layers = [("application/vnd.ollama.image.model", model), ("application/vnd.ollama.image.template", template)]
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


def push_model(registry_url, repo, tag, version=1, size=1 << 20):
    manifest, blobs = build("%s:%s" % (repo, tag), version, size)
    return push(registry_url, repo, tag, manifest, blobs)


def seed(registry_url, catalogue=CATALOGUE):
    """Push the catalogue at version 1; returns {"repo:tag": manifest digest}."""
    return {"%s:%s" % (repo, tag): push_model(registry_url, repo, tag, 1, size) for repo, tag, size in catalogue}


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
    seed_cmd = sub.add_parser("seed", help="push the lab catalogue")
    seed_cmd.add_argument("registry_url")
    args = parser.parse_args(argv)
    if args.cmd == "push":
        print(push_model(args.registry_url, args.repo, args.tag, args.version, args.size).split(":", 1)[1])
    else:
        for name, digest in seed(args.registry_url).items():
            print(name, digest)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
