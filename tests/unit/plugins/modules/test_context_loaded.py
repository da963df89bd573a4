"""ollama_context with the model already loaded: what the server's loaded copy holds is counted back as free (a
restart with another context frees it), so that sizing again while the model is in memory gives what it gave before
it was loaded, and the server role's context tasks keep the context (a re-run changes nothing; tests/fleet shows it
on a CPU host, where the lab's model is limited by its own context, not by memory).

The /api/ps answers are the real server's shape (tests/unit/plugins/modules/test_ready_gpu.py's recording) with the
VRAM figures a GPU would give; the lab has no GPU."""
from ansible_collections.llmops.ollama.plugins.module_utils._context import plan
from ansible_collections.llmops.ollama.plugins.module_utils._http import OllamaError
from ansible_collections.llmops.ollama.plugins.module_utils._names import parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import ModelIndex
from ansible_collections.llmops.ollama.plugins.modules.ollama_context import loaded_copy

GIB = 1024 ** 3
NAME = "qwen2.5-coder:7b"
DIGEST = "dae161e27b0e90dd1856c8bb3209201fd6736d8eb66298e75ed87571486f4364"
WEIGHTS = 4683087332
ENTRY = {"name": NAME, "model": NAME, "size": WEIGHTS, "digest": DIGEST}


class Server(object):
    """The client's /api/ps, as ModelIndex reads it."""

    def __init__(self, loaded=(), fails=False):
        self.loaded, self.fails = list(loaded), fails

    def running(self):
        if self.fails:
            raise OllamaError("403 Forbidden")
        return ModelIndex(self.loaded)


def ps(size, size_vram, digest=DIGEST, name=NAME):
    return {"name": name, "model": name, "size": size, "size_vram": size_vram, "digest": digest,
            "expires_at": "2026-12-07T17:46:53.347204982Z", "context_length": 90112}


def test_on_a_gpu_the_copys_vram_is_counted_back():
    held = loaded_copy(Server([ps(9 * GIB, 9 * GIB)]), parse_model_name(NAME), ENTRY, WEIGHTS, on_gpu=True)
    assert held == 9 * GIB


def test_on_the_cpu_what_it_holds_beyond_its_weights_is_counted_back():
    # the weights are file pages, which MemAvailable counts already
    held = loaded_copy(Server([ps(WEIGHTS + 2 * GIB, 0)]), parse_model_name(NAME), ENTRY, WEIGHTS, on_gpu=False)
    assert held == 2 * GIB


def test_nothing_is_counted_for_another_model_another_build_or_a_server_that_hides_ps():
    parsed = parse_model_name(NAME)
    assert loaded_copy(Server([ps(9 * GIB, 9 * GIB, name="llama3.1:8b")]), parsed, ENTRY, WEIGHTS, True) == 0
    assert loaded_copy(Server([ps(9 * GIB, 9 * GIB, digest="0" * 64)]), parsed, ENTRY, WEIGHTS, True) == 0
    assert loaded_copy(Server(fails=True), parsed, ENTRY, WEIGHTS, True) == 0
    assert loaded_copy(Server(), parsed, ENTRY, WEIGHTS, True) == 0


def test_sizing_again_with_the_model_loaded_gives_the_same_context():
    info = {"general.architecture": "qwen2", "qwen2.block_count": 28, "qwen2.context_length": 131072,
            "qwen2.embedding_length": 3584, "qwen2.attention.head_count": 28, "qwen2.attention.head_count_kv": 4}
    free = 20 * GIB
    first = plan(info, WEIGHTS, free, min_context=65536)
    # loaded at that context: the GPU holds the weights, the cache and the compute buffers; what is free drops by it
    in_use = first["weights_bytes"] + first["kv_bytes"] + first["compute_bytes"]
    held = loaded_copy(Server([ps(in_use, in_use)]), parse_model_name(NAME), ENTRY, WEIGHTS, on_gpu=True)
    again = plan(info, WEIGHTS, free - in_use + held, min_context=65536)
    assert again["context"] == first["context"] and first["fits_min"]
    # not counted back, the context would shrink below the minimum: a re-run would restart the server for less
    assert plan(info, WEIGHTS, free - in_use, min_context=65536)["context"] < 65536
