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


def test_scheme_is_ignored_as_the_server_ignores_it():
    """The server pulls a name's shortest form (no scheme) over HTTPS, or plain HTTP with insecure (issue 13 item 9;
    this test used to say the name's http:// picked plain HTTP, which the server never does)."""
    assert parse_model_name("http://reg:5000/ns/m:t").manifest_url() == "https://reg:5000/v2/ns/m/manifests/t"
    assert parse_model_name("reg:5000/ns/m:t").manifest_url() == "https://reg:5000/v2/ns/m/manifests/t"
    assert parse_model_name("reg:5000/ns/m:t").manifest_url(insecure=True) == "http://reg:5000/v2/ns/m/manifests/t"
    assert parse_model_name("https://reg:5000/ns/m:t").manifest_url(insecure=True) == \
        "http://reg:5000/v2/ns/m/manifests/t"
    assert parse_model_name("ftp://h/ns/m").key == parse_model_name("h/ns/m").key
    assert parse_model_name("http://reg/ns/m").scheme == "http"  # kept only to explain a refusal


@pytest.mark.parametrize("given, short", [
    ("qwen3:local", "qwen3:latest"),
    ("qwen3:LOCAL", "qwen3:latest"),
    ("reg:5000/ns/m:local", "reg:5000/ns/m:latest"),
    ("gpt-oss:20b:cloud", "gpt-oss:20b-cloud"),
    ("gpt-oss:20b-CLOUD", "gpt-oss:20b-cloud"),
    ("gpt-oss:cloud", "gpt-oss:cloud"),
    ("gpt-oss:20b:local", "gpt-oss:20b"),
    (" m:local", "m:latest"),
])
def test_source_suffixes_as_modelref_reads_them(given, short):
    """Pull and delete apply internal/modelref first (issue 13 item 9)."""
    assert parse_model_name(given).short == short


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
    ("http://model", "the namespace is empty"),
    ("http://ns/model", "may not contain '/'"),
    ("gpt-oss:local:cloud", "use either :local or :cloud, not both"),
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
