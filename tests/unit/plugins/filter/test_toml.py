"""The llmops.ollama.to_toml filter the codex role renders its files with: whatever the data, Python's own TOML
parser (tomllib) reads back exactly that data."""
import math
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.ollama.plugins.filter.toml import FilterModule, to_toml

scalars = st.one_of(
    st.text(),
    st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
documents = st.dictionaries(st.text(max_size=12), values, max_size=8)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_any_document_reads_back_the_same(doc):
    assert tomllib.loads(to_toml(doc)) == doc


@pytest.mark.parametrize("value, written", [
    ('say "hi"', r'"say \"hi\""'),
    ("C:\\path", r'"C:\\path"'),
    ("tab\tnew\nline\r", r'"tab\tnew\nline\r"'),
    ("bell\x07 del\x7f", r'"bell\u0007 del\u007F"'),
    ("unicode é 😀", '"unicode é 😀"'),
    ("'single'", "\"'single'\""),
])
def test_strings_are_escaped(value, written):
    text = to_toml({"v": value})
    assert text == "v = %s\n" % written
    assert tomllib.loads(text)["v"] == value


@pytest.mark.parametrize("key, written", [("bare-key_1", "bare-key_1"), ("a.b", '"a.b"'), ("x\n", '"x\\n"'),
                                          ("", '""'), ("é", '"é"')])
def test_keys_are_bare_only_when_toml_allows(key, written):
    assert to_toml({key: 1}) == "%s = 1\n" % written
    assert to_toml({key: {"k": 1}}) == "[%s]\nk = 1\n" % written


def test_layout_is_what_codex_files_look_like():
    doc = {
        "model": "qwen2.5-coder:7b",
        "model_provider": "ollama-gpu",
        "model_reasoning_effort": None,  # null: left out
        "model_providers": {"ollama-gpu": {
            "name": "Ollama (gpu1)", "base_url": "http://gpu1:11434/v1", "wire_api": "responses",
            "http_headers": {"X-Team": "blue", "X Spaced": "v"}, "request_max_retries": 0}},
        "mcp_servers": [{"name": "a", "args": ["--x", 1]}, {"name": "b", "env": {"K": "v"}}],
    }
    assert to_toml(doc) == (
        'model = "qwen2.5-coder:7b"\n'
        'model_provider = "ollama-gpu"\n'
        '\n'
        '[model_providers.ollama-gpu]\n'
        'name = "Ollama (gpu1)"\n'
        'base_url = "http://gpu1:11434/v1"\n'
        'wire_api = "responses"\n'
        'request_max_retries = 0\n'
        '\n'
        '[model_providers.ollama-gpu.http_headers]\n'
        'X-Team = "blue"\n'
        '"X Spaced" = "v"\n'
        '\n'
        '[[mcp_servers]]\n'
        'name = "a"\n'
        'args = ["--x", 1]\n'
        '\n'
        '[[mcp_servers]]\n'
        'name = "b"\n'
        '\n'
        '[mcp_servers.env]\n'
        'K = "v"\n')


def test_numbers_keep_their_types():
    doc = {"i": 3, "big": 2 ** 63 - 1, "f": 1.0, "e": 1e300, "inf": float("inf"), "b": False}
    back = tomllib.loads(to_toml(doc))
    assert back == doc and isinstance(back["f"], float) and isinstance(back["i"], int)
    assert math.isnan(tomllib.loads(to_toml({"n": float("nan")}))["n"])


def test_sorted_keys():
    assert to_toml({"b": 1, "a": {"d": 1, "c": 2}}, sort_keys=True) == "b = 1\n\n[a]\nc = 2\nd = 1\n"


@pytest.mark.parametrize("doc, message", [
    (["not", "a", "mapping"], "the input must be a mapping"),
    ({"a": [1, None]}, "a.[1] is null"),
    ({"a": 2 ** 63}, "out of TOML's 64-bit integer range"),
    ({"a": {"b": object()}}, "a.b is a object, which has no TOML form"),
    ({"a": b"\xff"}, "holds bytes that are not UTF-8"),
    ({(1, 2): "tuple key"}, "TOML keys are strings"),
])
def test_what_toml_cannot_hold_is_refused_clearly(doc, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("[", r"\[").replace("(", r"\(")):
        to_toml(doc)


def test_empty_and_null_only_documents():
    assert to_toml({}) == ""
    assert to_toml({"a": None}) == ""
    assert to_toml({"t": {}}) == "[t]\n"


def test_the_filter_is_exported_under_its_documented_name():
    assert FilterModule().filters() == {"to_toml": to_toml}
