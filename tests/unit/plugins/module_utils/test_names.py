"""Model names are parsed, defaulted and compared as Ollama's types/model/name.go does."""
import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._names import InvalidModelName, parse_model_name


@pytest.mark.parametrize("given, full, short", [
    ("llama3.2", "registry.ollama.ai/library/llama3.2:latest", "llama3.2:latest"),
    ("llama3.2:3b", "registry.ollama.ai/library/llama3.2:3b", "llama3.2:3b"),
    ("myteam/coder:7b", "registry.ollama.ai/myteam/coder:7b", "myteam/coder:7b"),
    ("reg.example.com:5000/site/m:q4_K_M", "reg.example.com:5000/site/m:q4_K_M", "reg.example.com:5000/site/m:q4_K_M"),
    ("10.0.0.1:5000/ns/model", "10.0.0.1:5000/ns/model:latest", "10.0.0.1:5000/ns/model:latest"),
    ("http://reg:5000/ns/model:1", "reg:5000/ns/model:1", "reg:5000/ns/model:1"),
    ("  gpt-oss:20b ", "registry.ollama.ai/library/gpt-oss:20b", "gpt-oss:20b"),
    ("qwen2.5-coder:7b-instruct-q4_0", "registry.ollama.ai/library/qwen2.5-coder:7b-instruct-q4_0",
     "qwen2.5-coder:7b-instruct-q4_0"),
])
def test_parse_defaults_and_short_form(given, full, short):
    name = parse_model_name(given)
    assert "%s/%s/%s:%s" % (name.host, name.namespace, name.model, name.tag) == full
    assert name.short == short


def test_match_is_case_insensitive_and_tag_sensitive():
    assert parse_model_name("Llama3.2").key == parse_model_name("llama3.2:LATEST").key
    assert parse_model_name("llama3.2").key != parse_model_name("llama3.2:1b").key
    assert parse_model_name("library/llama3.2").key == parse_model_name("llama3.2").key
    assert parse_model_name("registry.ollama.ai/library/llama3.2:latest").key == parse_model_name("llama3.2").key


def test_scheme_is_kept_for_the_registry_url():
    assert parse_model_name("http://reg:5000/ns/m:t").manifest_url() == "http://reg:5000/v2/ns/m/manifests/t"
    assert parse_model_name("reg:5000/ns/m:t").manifest_url() == "https://reg:5000/v2/ns/m/manifests/t"
    assert parse_model_name("reg:5000/ns/m:t").manifest_url(insecure=True) == "http://reg:5000/v2/ns/m/manifests/t"


@pytest.mark.parametrize("given, says", [
    ("", "give a name"),
    ("   ", "give a name"),
    ("bad name", "may not contain ' '"),
    ("-model", "may not start with '-'"),
    ("model:", "the tag is empty"),
    (":tag", "the model is empty"),
    ("/model", "the namespace is empty"),
    ("host:5000/model", "needs a namespace too"),
    ("ns.x/model", "looks like a registry host"),
    ("a/b/c/d", "may not contain '/'"),
    ("model:t/x", "looks like a registry host"),
    ("ftp://h/ns/m", "scheme must be http or https"),
    ("model@sha256:abc", "by digest"),
    ("m" * 81, "longer than 80"),
    ("model:" + "t" * 81, "longer than 80"),
    ("mödel", "may not contain"),
    ("ns_ok/mo\tdel", "may not contain"),
])
def test_invalid_names_say_why(given, says):
    with pytest.raises(InvalidModelName) as err:
        parse_model_name(given)
    assert says in str(err.value)
    assert "invalid model name" in str(err.value)


@pytest.mark.parametrize("value", [None, 3, ["llama3.2"], {"name": "x"}])
def test_non_strings_are_refused(value):
    with pytest.raises(InvalidModelName) as err:
        parse_model_name(value)
    assert "is a string" in str(err.value)
