"""Expected parses of model names, made by Ollama's own Go packages (types/model and internal/modelref).

`internal/` packages may only be imported from inside their module, so the small Go program below is written into
a writable copy of the packages it needs (go.mod, go.sum, types/model, internal/modelref, copied from the Go
module cache) under the module's own path, and built there offline. It reads names (a JSON list) on stdin and
prints, for each, what the server's pull and delete handlers make of it (server/model_resolver.go
parseNormalizePullModelRef, then routes.go PullHandler's DisplayShortest) and what plain model.ParseName makes of
it (the names the server lists). Program and answers are cached under LAB_CACHE, keyed by the Ollama version, the
program and the names.

    python3 -m tests.lab.names_oracle [VERSION]     # print the parses as JSON
"""
import hashlib
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from tests.lab.paths import LAB_CACHE
from tests.lab.versions import OLLAMA

GO_SOURCE = r'''
// Command llmopsnames prints how Ollama parses model names (written by the llmops.ollama test lab).
package main

import (
    "encoding/json"
    "os"

    "github.com/ollama/ollama/internal/modelref"
    "github.com/ollama/ollama/types/model"
)

type parts struct {
    Valid     bool   `json:"valid"`
    Error     string `json:"error,omitempty"`
    Host      string `json:"host,omitempty"`
    Namespace string `json:"namespace,omitempty"`
    Model     string `json:"model,omitempty"`
    Tag       string `json:"tag,omitempty"`
    Scheme    string `json:"scheme,omitempty"`
    Short     string `json:"short,omitempty"`
}

type answer struct {
    Input string `json:"input"`
    Pull  parts  `json:"pull"`  // what /api/pull and /api/delete use
    Plain parts  `json:"plain"` // model.ParseName alone
}

func describe(n model.Name) parts {
    if !n.IsValid() {
        return parts{Valid: false, Error: model.Unqualified(n).Error()}
    }
    return parts{Valid: true, Host: n.Host, Namespace: n.Namespace, Model: n.Model, Tag: n.Tag,
        Scheme: n.ProtocolScheme, Short: n.DisplayShortest()}
}

// pull is parseNormalizePullModelRef (server/model_resolver.go), then the name PullModel parses again.
func pull(raw string) parts {
    if _, err := modelref.ParseRef(raw); err != nil {
        return parts{Valid: false, Error: err.Error()}
    }
    normalized, _, err := modelref.NormalizePullName(raw)
    if err != nil {
        return parts{Valid: false, Error: err.Error()}
    }
    name := model.ParseName(normalized)
    if !name.IsValid() {
        return parts{Valid: false, Error: model.Unqualified(name).Error()}
    }
    p := describe(name)
    again := model.ParseName(name.DisplayShortest()) // PullHandler hands PullModel the shortest form
    p.Scheme = again.ProtocolScheme
    return p
}

func main() {
    var names []string
    if err := json.NewDecoder(os.Stdin).Decode(&names); err != nil {
        panic(err)
    }
    out := make([]answer, 0, len(names))
    for _, s := range names {
        out = append(out, answer{Input: s, Pull: pull(s), Plain: describe(model.ParseName(s))})
    }
    enc := json.NewEncoder(os.Stdout)
    enc.SetIndent("", " ")
    if err := enc.Encode(out); err != nil {
        panic(err)
    }
}
'''

ROOT = LAB_CACHE / "names-oracle"


def module_source(version):
    gomodcache = subprocess.run(["go", "env", "GOMODCACHE"], check=True, stdout=subprocess.PIPE,
                                universal_newlines=True).stdout.strip()
    path = Path(gomodcache) / "github.com" / "ollama" / ("ollama@v" + version)
    if not (path / "go.mod").is_file():
        raise RuntimeError("the Ollama module %s is not in the Go module cache (%s): build the lab's Ollama first "
                           "(python3 -m tests.lab.ollama_build %s)" % (version, path, version))
    return path


def _digest(*texts):
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]


def build(version=OLLAMA):
    """The oracle's binary for `version`, built once (cached under LAB_CACHE)."""
    out = ROOT / version / ("llmopsnames-" + _digest(GO_SOURCE))
    if out.is_file():
        return out
    src = module_source(version)
    work = ROOT / version / "src"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in ("go.mod", "go.sum"):
        shutil.copyfile(src / name, work / name)
    for package in ("types/model", "internal/modelref"):
        (work / package).mkdir(parents=True)
        for f in (src / package).glob("*.go"):
            if not f.name.endswith("_test.go"):
                shutil.copyfile(f, work / package / f.name)
    (work / "llmopsnames").mkdir()
    (work / "llmopsnames" / "main.go").write_text(GO_SOURCE)
    env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", CGO_ENABLED="0", GOWORK="off")
    tmp = out.with_name(out.name + ".tmp")
    proc = subprocess.run(["go", "build", "-o", str(tmp), "./llmopsnames"], cwd=str(work), env=env, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0:
        raise RuntimeError("building the names oracle against Ollama %s failed:\n%s" % (version, proc.stdout))
    os.replace(tmp, out)
    return out


def names():
    """A few hundred names: the forms users write, each part's edges, and Ollama's source suffixes."""
    fixed = [
        "llama3.2", "llama3.2:3b", "Llama3.2:LATEST", "library/llama3.2", "registry.ollama.ai/library/llama3.2:latest",
        "myteam/coder:7b", "reg.example.com:5000/site/m:q4_K_M", "10.0.0.1:5000/ns/model", "localhost:5000/lab/tiny",
        "[::1]:5000/lab/tiny", "127.0.0.1:5000/LAB/Tiny:V1", "http://reg:5000/ns/model:1", "https://reg/ns/m",
        "ftp://h/ns/m", "://h/ns/m", "http://model", "https://model:1b", "http://ns/model", "http:/h/ns/m",
        "HTTP://reg/ns/m", "qwen3:local", "qwen3:LOCAL", "qwen3:cloud", "qwen3:Cloud", "gpt-oss:20b:cloud",
        "gpt-oss:20b-cloud", "gpt-oss:20b-CLOUD", "gpt-oss:cloud", "gpt-oss:-cloud", "gpt-oss:local:cloud",
        "gpt-oss:cloud:local", "gpt-oss:20b:local", "ns/m:x-cloud", "h.com/ns/m:cloud", "h.com:5000/ns/m",
        "h.com:5000/ns/m:local", "m: cloud", "m:cloud ", " m:local", "m :cloud", "m:\tcloud", "m:loc al",
        "gpt-oss:20b:cloud:cloud", "cloud", ":cloud", ":local", "local", "-cloud", "m:-cloud", "a/b:c-cloud",
        "a:b/c-cloud", "", "   ", "\t", "\u3000llama3.2\u3000", "\x1cllama3.2", "llama3.2\x85", "bad name",
        "-model", "_model", "model-", "model.", "m..x", "model:", ":tag", "/model", "ns/", "host:5000/model",
        "ns.x/model", "a/b/c/d", "a/b/c/d/e", "model:t/x", "model@sha256:abc", "model:tag@sha256:abc", "@sha256:abc",
        "h@x://host/ns/m", "m" * 80, "m" * 81, "model:" + "t" * 80, "model:" + "t" * 81, "n" * 80 + "/m",
        "n" * 81 + "/m", "h" * 350 + "/ns/m", "h" * 351 + "/ns/m", "mödel", "ns_ok/mo\tdel", "ns-ok/model",
        "ns_ok/model", "n.s/model", "h_1/ns/m", "h-1:80/ns/m", "h:/ns/m", ":5000/ns/m", "h::5/ns/m", "h/n-s/m.x:t_1",
        "MODEL:TAG", "Model:Tag.1", "model:_tag", "model:.tag", "model:-tag", "model:ta:g", "ns/model:ta/g",
        "http://h/ns/m:cloud", "http://h/ns/m:x-cloud", "registry.ollama.ai/library/gpt-oss:20b-cloud",
        "library/gpt-oss:cloud", "x/y:LoCaL", "x/y:Local ", "qwen3:lokal", "qwen3:clouds", "qwen3:xcloud",
        "q:w:e", "q::w", "q:", "q:/", "/", "//", ":", "::", "a//b", "a/b//c", "é/model", "model:é", "h\u00e9.x/ns/m",
        "0/0:0", "0", "_", "_/_:_", "a:1.0", "a:1.0-cloud", "ns/a:1.0:cloud",
    ]
    hosts = ["", "registry.ollama.ai/", "Registry.Ollama.AI/", "reg:5000/", "https://reg/", "http://127.0.0.1:5000/",
             "bad host/", "h_/", "-h/"]
    namespaces = ["", "library/", "Team/", "a.b/", "a-b/", "_x/"]
    models = ["m", "Model.1", "m-x", "m_", ".m", "m/x"]
    tags = ["", ":latest", ":7B", ":q4_K_M", ":cloud", ":local", ":7b-cloud", ":7b:cloud", ":", ":-x", ":a b"]
    combos = ["%s%s%s%s" % c for c in itertools.product(hosts, namespaces, models, tags)]
    rng = random.Random(13)  # a fixed sample: the same names every run, so the cache holds
    sample = rng.sample(combos, 260)
    seen, out = set(), []
    for name in fixed + sample:
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def expected(version=OLLAMA):
    """[{input, pull: {...}, plain: {...}}] as Ollama `version` parses names(); cached."""
    given = names()
    cache = ROOT / version / ("expected-%s.json" % _digest(GO_SOURCE, json.dumps(given)))
    if cache.is_file():
        return json.loads(cache.read_text())
    binary = build(version)
    proc = subprocess.run([str(binary)], input=json.dumps(given), stdout=subprocess.PIPE, check=True,
                          universal_newlines=True)
    answers = json.loads(proc.stdout)
    tmp = cache.with_name(cache.name + ".tmp")
    tmp.write_text(json.dumps(answers, indent=1))
    os.replace(tmp, cache)
    return answers


if __name__ == "__main__":
    print(json.dumps(expected(*sys.argv[1:2]), indent=1))
