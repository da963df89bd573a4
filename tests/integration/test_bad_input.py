"""Bad input (issue 6 part 4, issue 13): hypothesis feeds all four modules arbitrary names, URLs, timeouts (huge
ones too) and types through their real argument spec, ollama_bundle bundles with stray and damaged store files,
ollama_import arbitrary and damaged indexes, and all of them servers and registries answering JSON that is not what
they should send; every case must end in a clear `failed` message or a correct result.

Each example runs the module's main() in-process, as community.general's tests/unit/plugins/modules/utils.py does
(module arguments patched in with ansible's own patch_module_args), but with the real exit_json/fail_json: the test
reads the JSON the module printed, so a result that cannot be serialised is caught too. Anything else escaping
main() is a traceback, and hypothesis reports the smallest input that causes it.

Servers: a closed loopback port (nothing listens), a real `ollama serve` of this module's own, with the lab
registry behind it (the session's `ollama_server` is not used: random states and purges would change what the
integration tests find there), and a scripted local server answering every request with the example's JSON (the
real server and registry never send such answers). Inputs are kept on this machine: a URL or model name whose host
resolves to an address elsewhere is discarded, so nothing is sent off the machine; the paths the modules write to
are under the test's own temporary folder.
"""
import contextlib
import json
import os
import socket
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ansible.module_utils.common.validation import check_type_int
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import InvalidBaseURL, normalize_base_url
from ansible_collections.llmops.ollama.plugins.module_utils._names import InvalidModelName, parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._store import bundle_index, find_manifest, read_manifest
from ansible_collections.llmops.ollama.plugins.modules import ollama_bundle, ollama_facts, ollama_import, ollama_model
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.net import free_port
from tests.lab.ollama_server import OllamaServer
from tests.lab.scripted_http import ScriptedServer

# Inputs per property. LLMOPS_PROPERTY_SCALE scales them: the ansible-core matrix (tests/lab/matrix.py) runs a tenth
# on the other releases, where what differs is ansible-core's argument handling, not the modules' own checks.
SCALE = float(os.environ.get("LLMOPS_PROPERTY_SCALE") or 1)
EXAMPLES = max(10, int(300 * SCALE))  # per property against the closed port (a few ms each)
REAL_EXAMPLES = max(10, int(200 * SCALE))  # per property against the real server (pulls, deletes, registry reads: up to 0.3 s each)
STORE_EXAMPLES = max(10, int(150 * SCALE))  # per property that writes bundles, imports, or starts a scripted server
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
REAL_SETTINGS = settings(SETTINGS, max_examples=REAL_EXAMPLES)
STORE_SETTINGS = settings(SETTINGS, max_examples=STORE_EXAMPLES)
CLOSED = free_port()  # bound and released: nothing listens there
TRIED = {}  # property -> {"failed": n, "ok": n}


# -- running a module: tests/lab/module_run.py ------------------------------------------------------------

def masked(result):
    """Whether no_log masked parts of the result: a short api_token (even "1") is hidden wherever it occurs, as in
    every Ansible module, so the values in the result cannot be compared with the input any more."""
    return "********" in json.dumps(result)


def count(prop, result):
    entry = TRIED.setdefault(prop, {"failed": 0, "ok": 0})
    entry["failed" if result.get("failed") else "ok"] += 1


# -- inputs ------------------------------------------------------------------------------------------------------

junk = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                 st.lists(st.text(max_size=8), max_size=3),
                 st.dictionaries(st.text(max_size=6), st.one_of(st.none(), st.integers(), st.text(max_size=6)),
                                 max_size=2))
part = st.text(alphabet=st.sampled_from(list("abcXYZ0129_-.:/@ ~%\u00e9\u4e2d\t")), max_size=14)
states = st.one_of(st.sampled_from(["present", "absent", "latest"]), st.text(max_size=8), junk)
bools = st.one_of(st.booleans(), st.sampled_from(["yes", "no", "on", "off", "true", "1", "0", "maybe", ""]), junk)
timeouts = st.one_of(st.integers(min_value=-10, max_value=60),
                     st.sampled_from([0, -1, 10 ** 6, 10 ** 9, 10 ** 10, 2 ** 31, 2 ** 63, 10 ** 30, "10", "1e3", "x",
                                      "", " 5 ", 2.5, 1e300, float("inf"), float("nan")]),
                     junk)
header_maps = st.one_of(junk, st.dictionaries(st.text(max_size=10), junk, max_size=3),
                        st.dictionaries(st.sampled_from(["X-A", "Host", "Authorization", "bad name", "X\nY", ""]),
                                        st.one_of(st.text(max_size=10), st.sampled_from(["a\r\nb", "\x00"])),
                                        max_size=2))


def urls(port):
    """Base URLs around a server on `port`: the forms Ollama accepts, their near misses, and arbitrary text."""
    hosts = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "::1", "0.0.0.0", "::", "[::]", "", "127.0.0.1:",
                             "user:pw@127.0.0.1", "nonexistent.invalid", "h\u00e9.invalid", "a b", "[::1", "-bad-"])
    ports = st.one_of(st.just(str(port)), st.sampled_from(["", "0", "65536", "99999", "-1", "x", "%d%d" % (port, 1)]))
    schemes = st.sampled_from(["http://", "https://", "", "HTTP://", "ftp://", "http:/", "://", "unix://"])
    paths = st.sampled_from(["", "/", "/v1", "/v1/", "/api", "//", "/x y", "?q=1", "#f", "/v1/v1"])
    structured = st.builds(lambda s, h, p, path, pad: pad + s + h + (":" + p if p else "") + path + pad,
                           schemes, hosts, ports, paths, st.sampled_from(["", " ", "\t", "\n"]))
    return st.one_of(structured, st.text(max_size=40), junk)


def names(registries):
    """Model names: well-formed ones on `registries`, near misses, and arbitrary text."""
    structured = st.builds(lambda scheme, host, ns, model, tag: scheme + "/".join(x for x in (host, ns) if x)
                           + ("/" if host or ns else "") + model + (":" + tag if tag is not None else ""),
                           st.sampled_from(["", "", "http://", "https://", "ftp://"]),
                           st.one_of(st.sampled_from(registries + [""]), part),
                           st.one_of(st.sampled_from(["lab", "library", ""]), part),
                           st.one_of(st.sampled_from(["tiny", "small", "nosuchmodel"]), part),
                           st.one_of(st.none(), st.sampled_from(["latest", "1b", "nosuchtag"]), part))
    return st.one_of(structured, st.text(max_size=40), junk)


# -- a known ansible-core bug, kept out of the properties and pinned by its own test below ---------------------

def _infinite(value):
    """inf, -inf, "Infinity"...: ansible-core 2.19's check_type_int raises OverflowError for them instead of its
    TypeError "cannot be converted to an int" (ansible/ansible#87253, fixed upstream), before the module runs."""
    import decimal

    if isinstance(value, bool) or not isinstance(value, (str, float)):
        return False
    try:
        return decimal.Decimal(value.strip() if isinstance(value, str) else value).is_infinite()
    except (decimal.DecimalException, ValueError):
        return False


def no_upstream_bugs(args):
    """Keep out the inputs that crash ansible-core's argument validation before the module's code runs."""
    assume(not _infinite(args.get("timeout")))
    requirements = args.get("requirements")
    if isinstance(requirements, dict):
        assume(not _infinite(requirements.get("fit_margin_percent")))
    if requirements_hit_by_81631():
        assume(requirements is None or isinstance(requirements, (dict, str)))


_HIT = []


def requirements_hit_by_81631():
    """Whether ollama_facts' requirements is still a dict option with suboptions, which ansible-core 2.19 crashes on
    when given a number or a bool: set_fallbacks() iterates the value before its type is checked, "argument of type
    'bool' is not iterable" (ansible/ansible#81631, open). A module that validates the dict itself is not hit."""
    if not _HIT:
        try:
            run_module(ollama_facts, {"base_url": "http://127.0.0.1:%d" % CLOSED, "requirements": False})
            _HIT.append(False)
        except TypeError as exc:
            assert "is not iterable" in str(exc), exc
            _HIT.append(True)
    return _HIT[0]


# -- keeping inputs on this machine ------------------------------------------------------------------------------

_RESOLVED = {}


def _stays_here(host, port, allowed_ports):
    """True if (host, port) is unresolvable, or loopback on one of `allowed_ports`."""
    if host not in _RESOLVED:
        try:
            _RESOLVED[host] = set(a[4][0] for a in socket.getaddrinfo(host, None))
        except (OSError, UnicodeError, ValueError):
            _RESOLVED[host] = set()
    addresses = _RESOLVED[host]
    if not addresses:
        return True
    return all(a in ("127.0.0.1", "::1") for a in addresses) and port in allowed_ports


def hermetic(args, allowed_ports, server=True):
    """Discard inputs that would make the module (or the server) connect anywhere but the lab parts on loopback."""
    given_urls = [args[k] for k in ("base_url", "host") if k in args] or [None]  # none given: OLLAMA_HOST's default
    if isinstance(args.get("bundle_url"), str):
        try:
            parts = urlsplit(args["bundle_url"])
            if parts.hostname:
                assume(_stays_here(parts.hostname, parts.port or 80, allowed_ports))
        except ValueError:
            pass
    for url in given_urls if server else []:
        if isinstance(url, str) or url is None:
            try:
                parts = urlsplit(normalize_base_url(url if url is not None else ""))
                assume(_stays_here(parts.hostname, parts.port, allowed_ports))
            except (InvalidBaseURL, ValueError):
                pass
    items = []
    for key in ("name", "models"):
        value = args.get(key)
        items.extend(value if isinstance(value, list) else [value])
    for item in items:
        given = item.get("name") if isinstance(item, dict) else item
        try:
            parsed = parse_model_name(given)
        except InvalidModelName:
            continue
        host, _sep, port = parsed.host.partition(":")
        try:
            port = int(port) if port else 443
        except ValueError:
            continue
        assume(_stays_here(host.strip("[]"), port, allowed_ports))


# -- servers -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(registry):
    with OllamaServer() as srv:
        yield srv


@pytest.fixture(scope="module", autouse=True)
def report(request):
    """Print (and keep in LAB_STATE/measurements.txt) how many inputs were tried and how each ended."""
    import time

    from tests.lab.paths import LAB_STATE

    started = time.time()
    yield
    total = sum(n for entry in TRIED.values() for n in entry.values())
    line = "bad input: %d inputs tried in %.0fs (%s)" % (total, time.time() - started, "; ".join(
        "%s: %d failed clearly, %d correct results" % (prop, e["failed"], e["ok"]) for prop, e in sorted(TRIED.items())))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + line)
    try:
        LAB_STATE.mkdir(parents=True, exist_ok=True)
        with open(LAB_STATE / "measurements.txt", "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def tags(srv):
    import urllib.request

    with urllib.request.urlopen(srv.url + "/api/tags", timeout=10) as resp:
        return {parse_model_name(m["name"]).key for m in json.loads(resp.read()).get("models") or []}


# -- properties --------------------------------------------------------------------------------------------------
#
# Each example is either wholly arbitrary, or a sensible call with one to three options replaced by arbitrary
# values: the second kind gets past the argument spec and the early checks, into the client, the registry and
# the server, where most of the code is.

def draw_args(data, base, wild):
    """Arbitrary options (`wild`: {option: strategy}), alone or replacing up to three of a sensible call's."""
    if data.draw(st.booleans(), label="over a sensible call"):
        args = data.draw(base, label="sensible call")
        keys = data.draw(st.lists(st.sampled_from(sorted(wild)), max_size=3, unique=True), label="replaced")
    else:
        args = {}
        keys = data.draw(st.lists(st.sampled_from(sorted(wild)), max_size=len(wild), unique=True), label="given")
    for key in keys:
        args[key] = data.draw(wild[key], label=key)
    return args


# manifest digests (a models item's digest, a lock's values): well-formed ones (hex or sha256:hex), near misses, junk
digests = st.one_of(st.from_regex(r"\A(sha256:)?[0-9a-f]{64}\Z"), st.from_regex(r"\A(sha256[:-])?[0-9a-fA-F]{60,66}\Z"),
                    st.text(max_size=70), junk)


def model_wild(url_strategy, name_strategy):
    return {
        "name": st.one_of(name_strategy, st.lists(name_strategy, max_size=4)),
        "models": st.one_of(junk, st.lists(st.one_of(
            name_strategy,
            st.fixed_dictionaries({}, optional={"name": name_strategy, "state": states, "digest": digests,
                                                "extra": junk})), max_size=4)),
        # a lock's keys are strings, as in any YAML or JSON map (a junk name may be a list: not a key)
        "lock": st.one_of(junk, st.dictionaries(name_strategy.filter(lambda key: isinstance(key, str)), digests,
                                                max_size=3)),
        "models_dir": st.one_of(st.sampled_from(["/nonexistent/models", "/etc/hostname", ""]), junk),
        "state": states,
        "timeout": timeouts,
        "base_url": url_strategy,
        "host": url_strategy,
        "insecure": bools,
        "purge": bools,
        "validate_certs": bools,
        "headers": header_maps,
        "api_token": st.one_of(st.text(max_size=20), junk),
        "fit_check": st.one_of(st.sampled_from(["fail", "warn", "off"]), junk),
        "ca_path": st.one_of(st.sampled_from(["/nonexistent/ca.pem", "/etc/hostname", ""]), junk),
        "client_cert": st.one_of(st.sampled_from(["/nonexistent/c.pem", "/etc/hostname"]), junk),
        "no_such_option": junk,
        "_ansible_check_mode": st.booleans(),
        "_ansible_diff": st.booleans(),
    }


def model_base(url, good_names):
    """A call that makes sense: models on the lab registry (some missing there), each state, small timeouts."""
    item = st.one_of(good_names, st.fixed_dictionaries(
        {"name": good_names}, optional={"state": st.sampled_from(["present", "absent", "latest"])}))
    return st.one_of(
        st.fixed_dictionaries({"base_url": url, "name": st.lists(good_names, min_size=1, max_size=3)},
                              optional={"state": st.sampled_from(["present", "absent", "latest"])}),
        st.fixed_dictionaries({"base_url": url, "models": st.lists(item, min_size=1, max_size=3)}),
    ).flatmap(lambda args: st.fixed_dictionaries({}, optional={
        "insecure": st.just(True), "purge": st.booleans(), "timeout": st.integers(1, 20),
        "fit_check": st.sampled_from(["fail", "warn", "off"]), "_ansible_check_mode": st.booleans(),
        "_ansible_diff": st.booleans()}).map(lambda extra: dict(args, **extra)))


def lab_names(registry_address):
    return st.builds(lambda repo, tag: "%s/lab/%s%s" % (registry_address, repo, tag),
                     st.sampled_from(["tiny", "small", "moving", "nosuchmodel", "Tiny"]),
                     st.sampled_from(["", ":latest", ":1b", ":nosuchtag"]))


@SETTINGS
@given(data=st.data())
def test_ollama_model_against_a_closed_port(data):
    url = "http://127.0.0.1:%d" % CLOSED
    registries = ["127.0.0.1:%d" % CLOSED]
    args = draw_args(data, model_base(st.just(url), lab_names(registries[0])), model_wild(urls(CLOSED), names(registries)))
    no_upstream_bugs(args)
    hermetic(args, {CLOSED})
    code, result = run_module(ollama_model, args)
    count("ollama_model, closed port", result)
    # nothing answers there, so no input can succeed: each must fail and say why
    assert_clear_failure(code, result)


@REAL_SETTINGS
@given(data=st.data())
def test_ollama_model_against_a_real_server(server, registry, data):
    url = st.sampled_from([server.url, server.url + "/", server.url + "/v1", "127.0.0.1:%d" % server.port,
                           "0.0.0.0:%d" % server.port, " %s " % server.url])
    wild = model_wild(st.one_of(url, urls(server.port)),
                      names([registry.address, "registry.ollama.ai", "127.0.0.1:%d" % CLOSED]))
    args = draw_args(data, model_base(url, lab_names(registry.address)), wild)
    no_upstream_bugs(args)
    registry_port = int(registry.address.rsplit(":", 1)[1])
    hermetic(args, {CLOSED, server.port, registry_port})
    before = tags(server)
    code, result = run_module(ollama_model, args)
    count("ollama_model, real server", result)
    after = tags(server)
    if result.get("failed"):
        assert_clear_failure(code, result)
        return
    assert code == 0, result
    # a correct result: the report says what was done, and each listed model is where its state says
    # models: null (or name: null) is an empty list, as a playbook's empty variable gives
    listed = args.get("models") if args.get("models") is not None else args.get("name")
    listed = [] if listed is None else listed if isinstance(listed, list) else [listed]
    default_state = args.get("state", "present")
    actions = {"present": ("none", "pulled"), "latest": ("none", "pulled", "updated"), "absent": ("none", "removed")}
    if not masked(result):
        for step in result["models"]:
            assert step["action"] in actions[step["state"]], step
            assert step["changed"] == (step["action"] != "none"), step
    if args.get("_ansible_check_mode"):
        assert after == before, "check mode changed the server"
        return
    wanted = set()
    for item in listed:
        name, state = (item["name"], item.get("state", default_state)) if isinstance(item, dict) else (item, default_state)
        key = parse_model_name(name).key
        assert (key in after) == (state != "absent"), (name, state, sorted(after))
        if state != "absent":
            wanted.add(key)
    if args.get("purge") in (True, "yes", "on", "true", "1", 1):
        assert after == wanted, (sorted(after), sorted(wanted))
    if not masked(result) and not any(s["action"] == "updated" for s in result["models"]):
        assert result["changed"] == (before != after), (result, before, after)


def facts_wild(url_strategy, name_strategy):
    requirement_keys = ["min_memory_gib", "min_disk_free_gib", "min_vram_gib", "require_gpu", "use_gpu",
                        "nvidia_min_driver", "amd_gfx_targets", "fit_margin_percent", "no_such_key"]
    return {
        "base_url": url_strategy,
        "timeout": timeouts,
        "gather": st.one_of(junk, st.lists(st.sampled_from(["server", "hardware", "gpu", ""]), max_size=3)),
        "models_path": st.one_of(st.sampled_from(["/", "/nonexistent", "relative/dir", "/etc/hostname", ""]), junk),
        "models": st.one_of(junk, st.lists(name_strategy, max_size=3)),
        "insecure": bools,
        "requirements": st.one_of(junk, st.dictionaries(st.sampled_from(requirement_keys), junk, max_size=4)),
        "headers": header_maps,
        "api_token": st.one_of(st.text(max_size=20), junk),
        "validate_certs": bools,
        "_ansible_check_mode": st.booleans(),
    }


def facts_base(url, good_names):
    return st.fixed_dictionaries({"base_url": url}, optional={
        "gather": st.sampled_from([["server"], ["hardware"], ["server", "hardware"]]),
        "models": st.lists(good_names, max_size=3), "insecure": st.just(True), "timeout": st.integers(1, 20),
        "requirements": st.fixed_dictionaries({}, optional={"min_memory_gib": st.floats(0, 1e6),
                                                            "require_gpu": st.booleans(),
                                                            "fit_margin_percent": st.integers(-5, 500)})})


def check_facts(result, args, server=None):
    if masked(result):
        return
    facts = result["ansible_facts"]["ollama"]
    gather = args.get("gather", ["server", "hardware"])
    url = args.get("base_url")
    if isinstance(url, str):
        assert facts["base_url"] == normalize_base_url(url)
    if "server" in gather:
        if server is not None and facts["base_url"] == server.url:
            assert facts["reachable"] is True and facts["version"] == server.version, facts
        elif server is None:
            assert facts["reachable"] is False and isinstance(facts["error"], str) and facts["error"], facts
    else:
        assert facts["reachable"] is None
    assert (facts["hardware"] is not None) == ("hardware" in gather)
    for fit in (facts["check"] or {}).get("models") or []:
        assert fit.get("error") is None or isinstance(fit["error"], str)


@SETTINGS
@given(data=st.data())
def test_ollama_facts_against_a_closed_port(data):
    url = "http://127.0.0.1:%d" % CLOSED
    args = draw_args(data, facts_base(st.just(url), lab_names("127.0.0.1:%d" % CLOSED)),
                     facts_wild(urls(CLOSED), names(["127.0.0.1:%d" % CLOSED])))
    no_upstream_bugs(args)
    hermetic(args, {CLOSED})
    code, result = run_module(ollama_facts, args)
    count("ollama_facts, closed port", result)
    if result.get("failed"):
        assert_clear_failure(code, result)
        # it never fails because the server is down, only for options it cannot use
        assert "could not reach" not in result["msg"] and "no answer from" not in result["msg"], result["msg"]
        return
    assert code == 0, result
    check_facts(result, args)


@REAL_SETTINGS
@given(data=st.data())
def test_ollama_facts_against_a_real_server(server, registry, data):
    url = st.sampled_from([server.url, server.url + "/v1/", "127.0.0.1:%d" % server.port])
    args = draw_args(data, facts_base(url, lab_names(registry.address)),
                     facts_wild(st.one_of(url, urls(server.port)), names([registry.address, "registry.ollama.ai"])))
    no_upstream_bugs(args)
    registry_port = int(registry.address.rsplit(":", 1)[1])
    hermetic(args, {CLOSED, server.port, registry_port})
    code, result = run_module(ollama_facts, args)
    count("ollama_facts, real server", result)
    if result.get("failed"):
        assert_clear_failure(code, result)
        assert "could not reach" not in result["msg"] and "no answer from" not in result["msg"], result["msg"]
        return
    assert code == 0, result
    check_facts(result, args, server)


# -- ollama_bundle: bundles with stray and damaged store files --------------------------------------------------

def stray_places(registry_address):
    """Where stray or damaged files go in a bundle: everywhere Ollama keeps its store, and where a folder belongs."""
    top = "manifests/%s" % registry_address
    return ["manifests/.DS_Store", top + "/.DS_Store", top + "/lab/.DS_Store", top + "/lab/tiny/.DS_Store",
            top + "/lab/tiny/latest", top + "/lab/tiny/latest/x", top + "/lab/small", top + "/Lab/Tiny/latest",
            top + "/lab/tiny/bad tag", "manifests/h/ns", "manifests", "blobs/.DS_Store", "blobs", "index.json",
            "index.json/x", ".verified.json", "blobs/sha256-" + "0" * 64]


def store_contents(tiny):
    """What such a file holds: nothing, junk, JSON that is not a manifest, bad digests, or a real manifest."""
    bad = json.dumps({"layers": [{"digest": "../../x", "size": 3}]}).encode()
    return st.sampled_from([b"", b"\x00junk", b"[]", b'"models"', b"{}", b"null", bad, tiny,
                            json.dumps({"sha256:" + "0" * 64: [1, 2, 3, 4]}).encode()])


def make_tree(root, entries):
    """Write `entries` ([(relative path, bytes)]) under `root`, skipping those a previous one made impossible."""
    for rel, content in entries:
        path = root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                continue
            path.write_bytes(content)
        except OSError:
            continue


def tree(root):
    """Every file under `root` with its bytes: to see that check mode wrote nothing."""
    import os

    found = {}
    for folder, _dirs, files in os.walk(str(root)):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                found[os.path.join(folder, name)] = f.read()
    return found


@pytest.fixture(scope="module")
def tiny_manifest(registry):
    import urllib.request

    req = urllib.request.Request(registry.url + "/v2/lab/tiny/manifests/latest",
                                 headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def bundle_wild(name_strategy, path_strategy):
    return {
        "path": path_strategy,
        "models": st.one_of(junk, st.lists(st.one_of(
            name_strategy, st.fixed_dictionaries({}, optional={"name": name_strategy, "state": states, "x": junk})),
            max_size=4)),
        "merge": bools,
        "insecure": bools,
        "timeout": timeouts,
        "validate_certs": bools,
        "registry_ca_path": st.one_of(st.sampled_from(["/nonexistent/ca.pem", "/etc/hostname", ""]), junk),
        "ca_path": st.one_of(st.sampled_from(["/nonexistent/ca.pem", "/etc/hostname"]), junk),
        "no_such_option": junk,
        "_ansible_check_mode": st.booleans(),
        "_ansible_diff": st.booleans(),
    }


def bundle_base(path, good_names):
    item = st.one_of(good_names, st.fixed_dictionaries(
        {"name": good_names}, optional={"state": st.sampled_from(["present", "absent", "latest"])}))
    return st.fixed_dictionaries({"path": path, "models": st.lists(item, max_size=3)}, optional={
        "insecure": st.just(True), "merge": st.booleans(), "timeout": st.integers(1, 20),
        "_ansible_check_mode": st.booleans(), "_ansible_diff": st.booleans()})


def check_bundle(result, args, root, registry):
    """A correct result: each model wanted is in the bundle as the registry has it, and the index says so."""
    if masked(result) or args.get("_ansible_check_mode"):
        return
    listed = args.get("models") or []
    merge = args.get("merge") in (True, "yes", "on", "true", "1", 1)
    for item in listed:
        name, state = (item.get("name"), item.get("state", "present")) if isinstance(item, dict) else (item, "present")
        parsed = parse_model_name(name)
        path = find_manifest(str(root), parsed)
        if state == "absent":
            if not merge:
                assert path is None, (name, path)
            continue
        assert path is not None, (name, result)
        digest, _manifest = read_manifest(path)
        # names match as Ollama matches them, whatever their case: lab/Tiny beside lab/tiny is that model
        key = ("%s/%s:%s" % (parsed.namespace, parsed.model, parsed.tag)).lower()
        assert digest == registry.digests[key].split(":")[1], (name, result)
    with open(str(root / "index.json")) as f:
        assert json.load(f) == bundle_index(str(root))


@STORE_SETTINGS
@given(data=st.data())
def test_ollama_bundle_with_stray_store_files(registry, tiny_manifest, tmp_path_factory, data):
    work = tmp_path_factory.mktemp("bundle")
    root = work / "bundle"
    entries = data.draw(st.lists(st.tuples(st.sampled_from(stray_places(registry.address)),
                                           store_contents(tiny_manifest)), max_size=6), label="store files")
    make_tree(root, entries)
    good = st.builds(lambda repo, tag: "%s/lab/%s%s" % (registry.address, repo, tag),
                     st.sampled_from(["tiny", "small", "nosuchmodel", "Tiny"]), st.sampled_from(["", ":latest", ":1b"]))
    paths = st.sampled_from([str(root), str(work / "other"), str(root / "index.json"), str(root / "blobs")])
    wild = bundle_wild(st.one_of(good, names([registry.address, "127.0.0.1:%d" % CLOSED])), paths)
    args = draw_args(data, bundle_base(st.just(str(root)), good), wild)
    no_upstream_bugs(args)
    registry_port = int(registry.address.rsplit(":", 1)[1])
    hermetic(args, {CLOSED, registry_port}, server=False)
    if not isinstance(args.get("path"), str) or not args["path"].startswith(str(work)):
        assume(False)  # the module writes there: only under this test's folder
    before = tree(work)
    code, result = run_module(ollama_bundle, args)
    count("ollama_bundle, stray store files", result)
    if args.get("_ansible_check_mode"):
        assert tree(work) == before, "check mode wrote to the bundle"
    if result.get("failed"):
        assert_clear_failure(code, result)
        return
    assert code == 0, result
    if args["path"] == str(root):
        check_bundle(result, args, root, registry)


# -- ollama_import: arbitrary and damaged indexes -----------------------------------------------------------------

@pytest.fixture(scope="module")
def real_bundle(registry, tmp_path_factory):
    """A bundle made by ollama_bundle from the lab registry, and a seed serving it over HTTP."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path_factory.mktemp("real-bundle")
    names_ = ["%s/lab/tiny:latest" % registry.address, "%s/lab/small:latest" % registry.address]
    code, result = run_module(ollama_bundle, dict(path=str(root), models=names_, insecure=True))
    assert code == 0, result
    with open(str(root / "index.json")) as f:
        index = json.load(f)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    seed = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=seed.serve_forever, daemon=True).start()
    yield index, "http://127.0.0.1:%d" % seed.server_address[1], names_
    seed.shutdown()
    seed.server_close()


def damaged_indexes(index):
    """The real index with one thing wrong, or an arbitrary one."""
    entries = index["models"]
    first = sorted(entries)[0]

    def with_entry(value):
        return {"models": dict(entries, **{first: value})}

    manifest = entries[first]["manifest"]
    return st.one_of(
        st.just(index), junk, st.dictionaries(st.text(max_size=6), junk, max_size=3),
        st.builds(lambda v: {"models": v}, junk),
        st.builds(lambda k: {"models": {k: entries[first]}}, st.text(max_size=20)),
        st.builds(with_entry, junk),
        st.builds(lambda d: with_entry(dict(entries[first], digest=d)), st.one_of(junk, st.just("0" * 64))),
        st.builds(lambda m: with_entry(dict(entries[first], manifest=m)), st.one_of(junk, st.sampled_from([
            "", "[]", "{}", manifest.replace("sha256:", "sha256:../"), manifest[:-1]]))),
        st.builds(lambda m: with_entry(dict(entries[first], manifest=m,
                                            digest=__import__("hashlib").sha256(m.encode()).hexdigest())),
                  st.sampled_from(["{}", '{"layers": [{"digest": "../../x", "size": 1}]}', '{"layers": 5}',
                                   manifest.replace('"size":', '"size":-'), "null"])),
        st.builds(lambda k: {"models": {k: entries[first] for k in [k]}, "extra": 1}, st.just(first)),
    )


def import_wild(url_strategy, name_strategy, index_strategy, paths, seeds):
    return {
        "models": st.one_of(junk, st.lists(st.one_of(
            name_strategy, st.fixed_dictionaries({}, optional={"name": name_strategy, "state": states})), max_size=3)),
        "index": index_strategy,
        "staging_dir": paths,
        "models_dir": paths,
        "bundle_url": st.one_of(seeds, junk, st.text(max_size=20)),
        "bundle_username": st.one_of(st.text(max_size=10), junk),
        "bundle_password": st.one_of(st.text(max_size=10), junk),
        "base_url": url_strategy,
        "timeout": timeouts,
        "headers": header_maps,
        "api_token": st.one_of(st.text(max_size=20), junk),
        "registry_ca_path": st.one_of(st.sampled_from(["/nonexistent/ca.pem", "/etc/hostname", ""]), junk),
        "bundle_ca_path": st.one_of(st.sampled_from(["/nonexistent/ca.pem", "/etc/hostname", ""]), junk),
        "bundle_ca_pem": st.one_of(st.sampled_from(["", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]),
                                   junk),
        "no_such_option": junk,
        "_ansible_check_mode": st.booleans(),
        "_ansible_diff": st.booleans(),
    }


@STORE_SETTINGS
@given(data=st.data())
def test_ollama_import_with_damaged_indexes(server, registry, real_bundle, tmp_path_factory, data):
    index, seed, good = real_bundle
    work = tmp_path_factory.mktemp("import")
    paths = st.sampled_from([str(work / "staging"), str(server.models_dir), str(work / "file"), str(work / "other")])
    (work / "file").write_bytes(b"not a folder")
    seeds = st.sampled_from([seed, seed + "/", "http://user:pw@%s" % seed[7:], "http://127.0.0.1:%d" % CLOSED,
                             "ftp://127.0.0.1/x", "http://[::1", seed + "/nowhere"])
    base = st.fixed_dictionaries(
        {"base_url": st.just(server.url), "models": st.lists(st.sampled_from(good), min_size=1, max_size=2),
         "index": st.just(index), "staging_dir": st.just(str(work / "staging")),
         "models_dir": st.just(str(server.models_dir))},
        optional={"bundle_url": st.just(seed), "_ansible_check_mode": st.booleans()})
    wild = import_wild(st.one_of(st.just(server.url), urls(server.port)),
                       st.one_of(st.sampled_from(good), names([registry.address])), damaged_indexes(index), paths,
                       seeds)
    args = draw_args(data, base, wild)
    no_upstream_bugs(args)
    registry_port = int(registry.address.rsplit(":", 1)[1])
    hermetic(args, {CLOSED, server.port, registry_port, int(seed.rsplit(":", 1)[1])})
    for key in ("staging_dir", "models_dir"):
        if key in args and not (isinstance(args[key], str) and (args[key].startswith(str(work)) or
                                                                args[key] == str(server.models_dir))):
            assume(False)  # the module writes there: only under this test's folders
    before = tags(server)
    code, result = run_module(ollama_import, args)
    count("ollama_import, damaged indexes", result)
    if args.get("_ansible_check_mode"):
        assert tags(server) == before, "check mode changed the server"
    if result.get("failed"):
        assert_clear_failure(code, result)
        return
    assert code == 0, result
    if masked(result) or args.get("_ansible_check_mode") or args.get("models_dir") != str(server.models_dir):
        return
    # a correct result: what was imported is listed with the bundle's digest
    import urllib.request

    with urllib.request.urlopen(server.url + "/api/tags", timeout=10) as resp:
        listed = {parse_model_name(m["name"]).key: m["digest"] for m in json.loads(resp.read())["models"]}
    for step in result["models"]:
        if step["action"] != "none":
            assert listed[parse_model_name(step["model"]).key] == step["digest_after"], (step, listed)


# -- every module against a server or registry answering JSON it should not send -------------------------------

json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10, 2 ** 40), st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(
                                                       ["models", "version", "name", "digest", "size", "layers",
                                                        "config", "error", "errors", "status", "token"]), inner,
                                                       max_size=4)),
                           max_leaves=12)


@STORE_SETTINGS
@given(data=st.data())
def test_every_module_against_answers_that_are_not_what_they_should_be(tmp_path_factory, data):
    answer = data.draw(st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                                 st.sampled_from([b"", b"[]", b"<html>", b"\xff\xfe", b'{"models": [{"name": 1}]}',
                                                  b'{"models": [{"name": "a:b", "digest": [1], "size": "x"}]}'])),
                       label="answer")
    status = data.draw(st.sampled_from([200, 200, 200, 201, 204, 301, 400, 401, 404, 500]), label="status")
    work = tmp_path_factory.mktemp("junk")

    def script(h):
        if status in (301,):
            return h.redirect("http://127.0.0.1:%d/elsewhere" % CLOSED, status)
        h.reply(status, answer)

    with ScriptedServer(script) as srv:
        name = "127.0.0.1:%d/ns/m" % srv.port
        module = data.draw(st.sampled_from(["model", "facts", "import", "bundle"]), label="module")
        if module == "model":
            args = dict(base_url=srv.url(), name=[name], insecure=True,
                        state=data.draw(st.sampled_from(["present", "latest", "absent"]), label="state"),
                        purge=data.draw(st.booleans(), label="purge"), allow_purge_all=True)
            mod = ollama_model
        elif module == "facts":
            args = dict(base_url=srv.url(), models=[name], insecure=True)
            mod = ollama_facts
        elif module == "import":
            args = dict(base_url=srv.url(), models=[name], index={"models": {}}, models_dir=str(work / "m"),
                        staging_dir=str(work / "s"))
            mod = ollama_import
        else:
            args = dict(path=str(work / "bundle"), models=[name], insecure=True)
            mod = ollama_bundle
        args["_ansible_check_mode"] = data.draw(st.booleans(), label="check mode")
        code, result = run_module(mod, args)
    count("every module, answers that are not what they should be", result)
    if result.get("failed"):
        assert_clear_failure(code, result)
        return
    assert code == 0, result
    if module == "facts":
        facts = result["ansible_facts"]["ollama"]
        assert facts["reachable"] is False or isinstance(facts["models"], list), facts


def _int_check_overflows():
    """Whether this ansible-core's check_type_int lets OverflowError out for an infinite float (2.18 to 2.21 do, as
    the matrix runs them: ansible/ansible#87253, fixed upstream; 2.16 and 2.17 raise the TypeError the argument spec
    turns into a message)."""
    try:
        check_type_int(float("inf"))
    except OverflowError:
        return True
    except TypeError:
        return False
    return False


@pytest.mark.xfail(_int_check_overflows(), strict=True, raises=OverflowError,
                   reason="this ansible-core's check_type_int: OverflowError for inf (ansible/ansible#87253, fixed "
                          "upstream); when ansible-core has the fix this passes, and the filter above can go")
@pytest.mark.parametrize("value", [float("inf"), "-Infinity", " inf "])
def test_infinite_timeout_is_refused_by_the_argument_spec(value):
    code, result = run_module(ollama_model, {"name": "x", "base_url": "http://127.0.0.1:%d" % CLOSED, "timeout": value})
    assert_clear_failure(code, result)
    assert "timeout" in result["msg"]


@pytest.mark.parametrize("value", [False, 5, 1.5])
def test_requirements_that_is_not_a_dict(value):
    """A clear failure naming requirements; while the option has suboptions, ansible-core's own crash (xfail)."""
    if requirements_hit_by_81631():
        pytest.xfail("ansible-core 2.19 set_fallbacks crashes on a non-dict value of a dict option with suboptions "
                     "(ansible/ansible#81631, open)")
    code, result = run_module(ollama_facts, {"base_url": "http://127.0.0.1:%d" % CLOSED, "requirements": value})
    assert_clear_failure(code, result)
    assert "requirements" in result["msg"]
