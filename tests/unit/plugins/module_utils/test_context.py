"""The context sized for Codex: KV cache per token from real models' shapes, and the largest context that fits in the
free memory of the recorded GPUs.

Shapes. Each dict below is the model_info Ollama's /api/show returns for the model, written out by hand: the keys are
those Ollama's converter writes into the GGUF header for the architecture (convert/convert_<arch>.go of the Ollama
Go module, v0.32.15 in /root/go/pkg/mod; llama.cpp's converter writes the same ones), and the values are the
architecture's published hyperparameters (the model's config.json on its publisher's page: hidden_size ->
embedding_length, num_hidden_layers -> block_count, num_attention_heads -> attention.head_count,
num_key_value_heads -> attention.head_count_kv, head_dim -> attention.key_length/value_length, sliding_window ->
attention.sliding_window, max_position_embeddings -> context_length, as those converters map them). They are not
read from a downloaded GGUF here (this machine reaches no model registry); for gemma3 the head counts are also the
ones Ollama's convert_gemma3.go sets by layer count (62 layers: 32 heads, 16 KV heads). Keys a GGUF has that the
KV cache does not depend on (rope, norms, vocabulary) are left out.

Weights are the sizes ollama.com's library lists for the tags (4.9 GB, 4.7 GB, 19 GB, 14 GB, 17 GB), as the decimal
byte counts they round to: test figures, not measured files.

Memory. Free VRAM comes from the recorded GPU samples of tests/unit/fixtures/gpu (sources in its README), read through
the real hardware code: the Radeon RX 7900 XT of marimo#9237 (rocm-smi) on the Navi 31 tree of ollama#2411, 21458059264
bytes total, 27856896 used, so 21430202368 free (19.96 GiB); and the GeForce RTX 2080 of gpu-utils#83, 7979 MiB
(8366587904 bytes; that nvidia-smi line has no free-memory column, so its total is what it has free, as
_requirements counts such a GPU; its driver, 440.64, is too old for Ollama, so the card stands here for an 8 GB GPU's
memory only). A figure no recording has (80 GiB, a CPU host's RAM) is given as the module's `memory` option takes
it, and said so.
"""
import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import _context as ctx
from ansible_collections.llmops.ollama.plugins.module_utils import _hardware as hw
from ansible_collections.llmops.ollama.plugins.modules import ollama_context
from ansible_collections.llmops.ollama.tests.unit.fixtures.gpu.recorded import Tools, text, tree
from tests.lab.paths import REPO

GIB = 1024 ** 3
NAVI31 = "navi31_kfd-recorded-ollama-2411_drm-constructed"
RX7900_FREE = 21458059264 - 27856896
RTX2080_FIELDS = ("power.limit,power.min_limit,power.max_limit,memory.total,vbios_version,driver_version,name,gpu_uuid,"
                  "power.draw,temperature.gpu,temperature.memory,clocks.current.graphics,clocks.sm,clocks.mem,"
                  "utilization.gpu,utilization.memory,fan.speed,pcie.link.width.current,pstate").split(",")

# llama3.1:8b - Llama 3.1 8B (Meta's config.json: 32 layers, 32 heads, 8 KV heads, hidden 4096, 131072 positions).
# No key_length in a llama GGUF: the head size is 4096 / 32 = 128.
LLAMA31_8B = {"general.architecture": "llama", "llama.block_count": 32, "llama.attention.head_count": 32,
              "llama.attention.head_count_kv": 8, "llama.embedding_length": 4096, "llama.context_length": 131072}
# qwen2.5-coder:7b - Qwen2.5-Coder 7B (28 layers, 28 heads, 4 KV heads, hidden 3584; the GGUF's context_length is
# config.json's max_position_embeddings 32768, the YaRN extension to 128k being off in Ollama's build). 3584/28 = 128.
QWEN25_CODER_7B = {"general.architecture": "qwen2", "qwen2.block_count": 28, "qwen2.attention.head_count": 28,
                   "qwen2.attention.head_count_kv": 4, "qwen2.embedding_length": 3584, "qwen2.context_length": 32768}
# qwen3-coder:30b - Qwen3-Coder 30B-A3B (qwen3moe: 48 layers, 32 heads, 4 KV heads, head_dim 128, hidden 2048,
# 262144 positions). The head size is given (128), not 2048 / 32 = 64.
QWEN3_CODER_30B = {"general.architecture": "qwen3moe", "qwen3moe.block_count": 48,
                   "qwen3moe.attention.head_count": 32, "qwen3moe.attention.head_count_kv": 4,
                   "qwen3moe.attention.key_length": 128, "qwen3moe.attention.value_length": 128,
                   "qwen3moe.embedding_length": 2048, "qwen3moe.context_length": 262144,
                   "qwen3moe.expert_count": 128, "qwen3moe.expert_used_count": 8}
# gpt-oss:20b - gpt-oss 20B (gptoss in Ollama's GGUF, convert_gptoss.go: 24 layers, 64 heads, 8 KV heads, head_dim 64,
# hidden 2880, a 128-token sliding window on every other layer, 131072 positions).
GPT_OSS_20B = {"general.architecture": "gptoss", "gptoss.block_count": 24, "gptoss.attention.head_count": 64,
               "gptoss.attention.head_count_kv": 8, "gptoss.attention.key_length": 64,
               "gptoss.attention.value_length": 64, "gptoss.embedding_length": 2880, "gptoss.context_length": 131072,
               "gptoss.attention.sliding_window": 128, "gptoss.expert_count": 32, "gptoss.expert_used_count": 4}
# gemma3:27b - Gemma 3 27B (62 layers, 32 heads, 16 KV heads, head_dim 128, hidden 5376, a 1024-token window on five
# layers of every six, 131072 positions).
GEMMA3_27B = {"general.architecture": "gemma3", "gemma3.block_count": 62, "gemma3.attention.head_count": 32,
              "gemma3.attention.head_count_kv": 16, "gemma3.attention.key_length": 128,
              "gemma3.attention.value_length": 128, "gemma3.embedding_length": 5376, "gemma3.context_length": 131072,
              "gemma3.attention.sliding_window": 1024}

WEIGHTS = {"llama3.1:8b": 4900000000, "qwen2.5-coder:7b": 4700000000, "qwen3-coder:30b": 19000000000,
           "gpt-oss:20b": 14000000000, "gemma3:27b": 17000000000}
SHAPES = {"llama3.1:8b": LLAMA31_8B, "qwen2.5-coder:7b": QWEN25_CODER_7B, "qwen3-coder:30b": QWEN3_CODER_30B,
          "gpt-oss:20b": GPT_OSS_20B, "gemma3:27b": GEMMA3_27B}


def plan(model, memory, num_parallel=1, cache_type="f16", **kw):
    return ctx.plan(SHAPES[model], WEIGHTS[model], memory, num_parallel, cache_type, **kw)


@pytest.fixture
def rx7900_free(tmp_path):
    """The recorded Navi 31 tree and rocm-smi output, through the hardware code and the module's memory reading."""
    found = hw.gather(str(tmp_path), *_tools(rocm_smi=(0, text("amd/marimo-9237_rocm-smi_rx7900xt.json"), "")),
                      root=tree(NAVI31, tmp_path))
    found.update(memory=dict(available_bytes=60 * GIB), cpu={}, disk={})
    free, devices, where, on_gpu = ollama_context.host_memory(found, True, "", [])
    assert (free, devices, on_gpu) == (RX7900_FREE, 1, True)
    assert where == "free VRAM of Radeon RX 7900 XT (20.0 GiB)"
    return free


def _tools(**answers):
    tools = Tools(**answers)
    return tools.run, tools.which


@pytest.fixture
def rtx2080_memory():
    (gpu,) = hw.parse_nvidia_smi(text("nvidia/gpu-utils-83_rtx2080-driver-440_noheader.csv"), fields=RTX2080_FIELDS)
    assert gpu["vram_free_bytes"] is None and gpu["vram_total_bytes"] == 7979 * 1024 * 1024
    return ollama_context.free_vram(gpu)


# -- KV cache per token -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, f16, q8_0, q4_0", [
    # 2 (K and V) x 32 layers x 8 KV heads x 128 x 2 bytes = 131072 (128 KiB, docs/codex.md's table);
    # q8_0 34 bytes per 32 values: 65536 values x 34 / 32 = 69632; q4_0: 65536 x 18 / 32 = 36864
    ("llama3.1:8b", 131072, 69632, 36864),
    # 2 x 28 x 4 x 128 x 2 = 57344 (56 KiB)
    ("qwen2.5-coder:7b", 57344, 30464, 16128),
    # 2 x 48 x 4 x 128 x 2 = 98304 (96 KiB): the given head size, 128
    ("qwen3-coder:30b", 98304, 52224, 27648),
    # only the 12 global layers grow with the context: 2 x 12 x 8 x 64 x 2 = 24576
    ("gpt-oss:20b", 24576, 13056, 6912),
    # only the 10 global layers of 62 (layers 5, 11, ... 59): 2 x 10 x 16 x 128 x 2 = 81920
    ("gemma3:27b", 81920, 43520, 23040),
])
def test_kv_bytes_per_token_of_real_shapes(model, f16, q8_0, q4_0):
    model_shape = ctx.shape(SHAPES[model])
    assert [ctx.bytes_per_token(model_shape, t) for t in ("f16", "q8_0", "q4_0")] == [f16, q8_0, q4_0]


def test_sliding_window_layers_keep_only_their_window():
    gpt = ctx.shape(GPT_OSS_20B)
    assert (gpt["attention_layers"], gpt["swa_layers"], gpt["sliding_window"]) == (24, 12, 128)
    assert [p["swa"] for p in gpt["per_layer"][:4]] == [True, False, True, False]  # llama.cpp: il % 2 < 1 slides
    # 65536 tokens, one slot, micro-batch 512: 12 global layers x 1024 values x 65536 cells x 2 bytes, and 12 sliding
    # layers x 1024 values x pad(128 + 512, 256) = 768 cells x 2 bytes
    assert ctx.kv_bytes(gpt, 65536, 1, "f16", 512) == 12 * 1024 * 65536 * 2 + 12 * 1024 * 768 * 2 == 1629487104
    # two slots: each holds its own 65536 cells and its own window
    assert ctx.kv_bytes(gpt, 65536, 2, "f16", 512) == 2 * 1629487104
    gemma = ctx.shape(GEMMA3_27B)
    assert (gemma["attention_layers"], gemma["swa_layers"]) == (62, 52)
    assert [il for il, p in enumerate(gemma["per_layer"]) if not p["swa"]] == [5, 11, 17, 23, 29, 35, 41, 47, 53, 59]
    # the same layers when the GGUF says it per layer (convert_gemma3.go writes sliding_window_pattern so)
    listed = dict(GEMMA3_27B, **{"gemma3.attention.sliding_window_pattern": [(i + 1) % 6 != 0 for i in range(62)]})
    assert ctx.shape(listed)["per_layer"] == gemma["per_layer"]
    # or as a period, as Gemma's config.json has it
    assert ctx.shape(dict(GEMMA3_27B, **{"gemma3.attention.sliding_window_pattern": 6}))["per_layer"] == \
        gemma["per_layer"]
    # a context shorter than the window: a sliding layer holds the context, no more
    assert ctx.kv_bytes(gpt, 256, 1, "f16", 512) == 24 * 1024 * 256 * 2


def test_per_layer_kv_heads_and_layers_without_attention():
    """Hybrid models list head_count_kv per layer, 0 for a recurrent layer (qwen35 and nemotron_h GGUFs do)."""
    info = {"general.architecture": "hybrid", "hybrid.block_count": 4, "hybrid.attention.head_count": 8,
            "hybrid.attention.head_count_kv": [0, 0, 0, 2], "hybrid.attention.key_length": 256,
            "hybrid.attention.value_length": 256, "hybrid.context_length": 262144}
    model_shape = ctx.shape(info)
    assert model_shape["attention_layers"] == 1
    assert ctx.bytes_per_token(model_shape) == 2 * 2 * 256 * 2
    assert ctx.shape(dict(info, **{"hybrid.attention.head_count_kv": 2}))["attention_layers"] == 4
    # no head_count_kv at all: llama.cpp takes one KV head per head (no grouping)
    plain = dict(LLAMA31_8B)
    plain.pop("llama.attention.head_count_kv")
    assert ctx.bytes_per_token(ctx.shape(plain)) == 4 * ctx.bytes_per_token(ctx.shape(LLAMA31_8B))


def test_latent_attention_keeps_no_values():
    """deepseek2's MLA: the cache keeps the compressed keys (kv_lora_rank + rope) and no separate values."""
    info = {"general.architecture": "deepseek2", "deepseek2.block_count": 2, "deepseek2.attention.head_count": 16,
            "deepseek2.attention.head_count_kv": 1, "deepseek2.attention.key_length": 576,
            "deepseek2.attention.value_length": 512, "deepseek2.attention.key_length_mla": 192,
            "deepseek2.attention.value_length_mla": 128, "deepseek2.context_length": 163840}
    assert ctx.bytes_per_token(ctx.shape(info)) == 2 * 576 * 2


# -- the context chosen on recorded GPUs -----------------------------------------------------------------------

@pytest.mark.parametrize("model, parallel, cache_type, context, fits_min, limited_by", [
    # hand check: (21430202368 free - 4900000000 weights - 1073741824 margin) / 131072 per token = 117923.6, so
    # 117760 (115 x 1024); Ollama's batch stays 512 (its estimate is over 80% of the memory), counted as 0
    ("llama3.1:8b", 1, "f16", 117760, True, "memory"),
    ("llama3.1:8b", 2, "f16", 58368, False, "memory"),
    ("llama3.1:8b", 2, "q8_0", 110592, True, "memory"),
    # the model's own limit: 32768 fits, 65536 is more than it holds
    ("qwen2.5-coder:7b", 1, "f16", 32768, False, "model"),
    # hand check (q8_0): (21430202368 - 19000000000 - 1073741824) / 52224 = 25974.1, so 25600
    ("qwen3-coder:30b", 1, "f16", 13312, False, "memory"),
    ("qwen3-coder:30b", 1, "q8_0", 25600, False, "memory"),
    # hand check (2 parallel): 2 x 24576 per token; the 12 sliding layers hold 2 x 768 cells x 1024 values x 2 bytes
    # = 3145728 per layer, 37748736 in all; (21430202368 - 14000000000 - 1073741824 - 37748736) / 49152 = 128553.8,
    # so 128000 (125 x 1024)
    ("gpt-oss:20b", 1, "f16", 131072, True, "model"),
    ("gpt-oss:20b", 2, "f16", 128000, True, "memory"),
    # hand check (q8_0): the 52 sliding layers hold pad(1024 + 512, 256) = 1536 cells x 4096 values x 34/32 bytes =
    # 347602944 in all; (21430202368 - 17000000000 - 1073741824 - 347602944) / 43520 = 69137.3, so 68608 (67 x 1024)
    ("gemma3:27b", 1, "f16", 32768, False, "memory"),
    ("gemma3:27b", 1, "q8_0", 68608, True, "memory"),
])
def test_contexts_on_the_recorded_rx_7900_xt(rx7900_free, model, parallel, cache_type, context, fits_min, limited_by):
    figures = plan(model, rx7900_free, parallel, cache_type)
    assert (figures["context"], figures["fits_min"], figures["limited_by"]) == (context, fits_min, limited_by)
    assert figures["available_bytes"] == RX7900_FREE and figures["weights_bytes"] == WEIGHTS[model]
    assert figures["need_bytes"] <= RX7900_FREE
    assert figures["need_bytes"] == (figures["weights_bytes"] + figures["kv_bytes"] + figures["compute_bytes"]
                                     + figures["margin_bytes"])
    if limited_by == "memory":  # the largest: 1024 tokens more do not fit
        more = ctx.need(ctx.shape(SHAPES[model]), context + 1024, WEIGHTS[model], RX7900_FREE, parallel, cache_type)
        assert more["total_bytes"] > RX7900_FREE
    assert context % 1024 == 0


def test_an_8_gb_gpu(rtx2080_memory):
    # hand check: (8366587904 - 4900000000 - 1073741824) / 131072 = 18256.0, so 17408 (17 x 1024)
    assert plan("llama3.1:8b", rtx2080_memory)["context"] == 17408
    # gpt-oss's weights alone (14 GB) are more than the card has: no context at all
    figures = plan("gpt-oss:20b", rtx2080_memory)
    assert figures["context"] is None and not figures["fits_min"] and figures["need_bytes"] is None


def test_a_large_gpu_gets_the_models_own_limit():
    """80 GiB, as given to the module's memory option (no recording has such a GPU)."""
    for model, limit in (("llama3.1:8b", 131072), ("qwen3-coder:30b", 262144), ("gpt-oss:20b", 131072)):
        figures = plan(model, 80 * GIB, 2)
        assert (figures["context"], figures["limited_by"], figures["fits_min"]) == (limit, "model", True)
    # with room to spare Ollama takes a batch of 2048 for such contexts, and counts 2 GiB for it
    figures = plan("llama3.1:8b", 80 * GIB, 2)
    assert (figures["batch"], figures["compute_bytes"]) == (2048, 2 * GIB)


def test_each_gpu_keeps_its_margin():
    """The recorded RX 7900 XT's free memory twice: one GPU with that much, or two such cards."""
    one = plan("qwen3-coder:30b", 2 * RX7900_FREE, 2)
    two = plan("qwen3-coder:30b", 2 * RX7900_FREE, 2, devices=2)
    assert (one["margin_bytes"], two["margin_bytes"]) == (GIB, 2 * GIB)
    # the second GiB kept free is 1 GiB / (2 slots x 98304 bytes) = 5461 tokens fewer, so six steps of 1024
    assert (one["context"], two["context"]) == (111616, 105472)


# The lab's tiny model (tests/lab/tiny_gguf.py), whose small cache lets the batch, not the cache, decide the fit.
TINY = {"general.architecture": "llama", "llama.block_count": 2, "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 4, "llama.embedding_length": 64, "llama.context_length": 32768}


@pytest.mark.parametrize("info, weights, memories", [
    (SHAPES[m], WEIGHTS[m], range(4 * GIB, 72 * GIB, 3 * GIB + 123456789)) for m in sorted(SHAPES)] + [
    (TINY, 600000, range(GIB, 3 * GIB, 37 * 1024 * 1024)),
    (dict(GPT_OSS_20B, **{"gptoss.context_length": 131000}), WEIGHTS["gpt-oss:20b"], range(14 * GIB, 40 * GIB, GIB)),
])
def test_the_search_finds_what_trying_every_step_finds(info, weights, memories):
    """largest_fit bisects; trying every candidate from the top down must give the same context, for memory from
    too little for the weights to more than the model's limit needs (given figures), with the batches changing."""
    model_shape = ctx.shape(info)
    limit = model_shape["context_length"]
    candidates = sorted(set([limit] + list(range(1024, limit + 1, 1024))), reverse=True)
    for memory in memories:
        for parallel, cache_type in ((1, "f16"), (3, "q8_0")):
            found = ctx.largest_fit(model_shape, weights, memory, parallel, cache_type, 1, ctx.FIT_MARGIN_BYTES)
            every = next((c for c in candidates if ctx.need(model_shape, c, weights, memory, parallel,
                                                            cache_type)["total_bytes"] <= memory), None)
            assert (found["context"] if found else None) == every, (memory, parallel, cache_type)


# -- refusals, with the figures -------------------------------------------------------------------------------------

def test_a_gpu_too_small_for_65536_is_named_with_the_figures(rx7900_free):
    figures = plan("llama3.1:8b", rx7900_free, 2)
    message = ctx.failure_message("gpu1 (http://127.0.0.1:11434)", "llama3.1:8b", figures)
    # 4900000000 + 2 x 65536 x 131072 (16 GiB) + 1 GiB margin = 23153611008 = 21.56 GiB
    assert figures["need_at_min_bytes"] == 23153611008 and figures["kv_at_min_bytes"] == 16 * GIB
    assert message.startswith(
        "gpu1 (http://127.0.0.1:11434): llama3.1:8b needs 21.56 GiB for a 65536 context with 2 parallel (KV f16: "
        "16.00 GiB, weights 4.56 GiB, compute and margin 1.00 GiB) but 19.96 GiB are free; 58368 tokens would fit. "
        "It would fit with num_parallel 1 (14.31 GiB); with a q8_0 KV cache (14.06 GiB); with a q4_0 KV cache "
        "(10.06 GiB). Lower num_parallel (ollama_server_num_parallel), use a smaller KV cache")
    assert message.endswith("or set a smaller context by hand (ollama_server_context_length).")


def test_when_nothing_the_settings_change_would_do(rtx2080_memory):
    figures = plan("qwen3-coder:30b", rtx2080_memory, 2)
    message = ctx.failure_message("gpu2", "qwen3-coder:30b", figures)
    assert "but 7.79 GiB are free; not even 1024 tokens fit." in message
    assert "Even with num_parallel 1 and a q4_0 KV cache it would need 20.38 GiB." in message
    assert message.endswith("Choose a smaller model or a GPU with more free memory, or set a smaller context by hand "
                            "(ollama_server_context_length).")
    assert "num_parallel (ollama_server" not in message


def test_a_model_whose_own_limit_is_below_the_minimum(rx7900_free):
    message = ctx.failure_message("gpu1", "qwen2.5-coder:7b", plan("qwen2.5-coder:7b", rx7900_free))
    assert message == ("gpu1: qwen2.5-coder:7b holds at most 32768 tokens (its context_length), below the 65536 "
                       "minimum; choose a model with a longer context, or lower the minimum (min_context); 32768 fits "
                       "in memory here.")
    assert ctx.failure_message("gpu1", "x", plan("qwen2.5-coder:7b", rx7900_free, min_context=32768)) is None


def test_the_minimum_is_configurable(rx7900_free):
    figures = plan("qwen3-coder:30b", rx7900_free, 1, "q8_0", min_context=16384)
    assert figures["fits_min"] and figures["context"] == 25600


def test_architectures_ollama_runs_one_at_a_time():
    info = {"general.architecture": "qwen3next", "qwen3next.block_count": 4, "qwen3next.attention.head_count": 16,
            "qwen3next.attention.head_count_kv": [0, 0, 0, 2], "qwen3next.attention.key_length": 256,
            "qwen3next.attention.value_length": 256, "qwen3next.context_length": 262144}
    figures = ctx.plan(info, GIB, 20 * GIB, 4)
    assert (figures["num_parallel"], figures["num_parallel_asked"]) == (1, 4)
    assert figures["num_parallel_note"] == "Ollama runs qwen3next models one request at a time"
    embedding = ctx.plan(LLAMA31_8B, GIB, 20 * GIB, 4, capabilities=["embedding"])
    assert embedding["num_parallel"] == 1


def test_a_cpu_host_uses_the_ram():
    """A hardware dict built by the test (no GPU, 40 GiB available): MemAvailable is the memory."""
    hardware = dict(memory=dict(available_bytes=40 * GIB), gpus=[], gpu_drivers=[], cpu={}, disk={})
    free, devices, where, on_gpu = ollama_context.host_memory(hardware, True, "", [])
    assert (free, devices, on_gpu) == (40 * GIB, 1, False)
    assert where == "RAM available (40.0 GiB; no GPU Ollama can use)"


def test_gpus_that_report_no_memory_are_not_guessed(tmp_path):
    """triton#8070's two cards: nvidia-smi without memory columns."""
    hardware = hw.gather(str(tmp_path), *_tools(nvidia_smi=(0, text("nvidia/triton-8070_two-gpus.csv"), "")),
                         root=str(tmp_path))
    hardware.update(memory=dict(available_bytes=60 * GIB))
    with pytest.raises(ollama_context.MemoryUnknown) as err:
        ollama_context.host_memory(hardware, True, "", [])
    assert str(err.value) == ("NVIDIA TITAN V, NVIDIA RTX 5880 Ada Generation report no memory figure (nvidia-smi or "
                              "the amdgpu driver gave none; an APU shares the RAM), so the memory free for the model "
                              "is unknown: give memory in bytes")
    with pytest.raises(ollama_context.MemoryUnknown) as err:
        ollama_context.host_memory(hardware, True, "", ["1"])
    assert str(err.value).startswith("NVIDIA RTX 5880 Ada Generation reports no memory figure")
    with pytest.raises(ollama_context.MemoryUnknown) as err:
        ollama_context.host_memory(hardware, True, "", ["7"])
    assert str(err.value) == ("gpus: 7 not among this host's GPUs (0 NVIDIA TITAN V, 1 NVIDIA RTX 5880 Ada "
                              "Generation)")
    # the server on the CPU on purpose: the RAM
    assert ollama_context.host_memory(hardware, False, "", [])[0] == 60 * GIB


# -- model_info that cannot be sized ----------------------------------------------------------------------------

@pytest.mark.parametrize("change, says", [
    ({"llama.block_count": None}, "model_info has no llama.block_count"),
    ({"llama.context_length": None}, "model_info has no llama.context_length"),
    ({"llama.attention.head_count": None}, "model_info has no llama.attention.head_count"),
    ({"llama.embedding_length": None}, "model_info has neither llama.attention.key_length/value_length nor "
                                       "llama.embedding_length to size the keys and values by"),
    ({"llama.block_count": "32"}, "model_info's llama.block_count is '32', not a whole number"),
    ({"llama.attention.head_count_kv": [8, "x"]}, "model_info's llama.attention.head_count_kv is [8, 'x'], not whole "
                                                  "numbers per layer"),
    ({"general.architecture": None}, "model_info has no general.architecture"),
    ({"llama.attention.head_count_kv": [8] * 31}, "model_info's llama.attention.head_count_kv has 31 values for 32 "
                                                  "layers"),
    ({"llama.context_length": 0}, "model_info's llama.context_length is 0"),
])
def test_missing_keys_are_named(change, says):
    info = dict(LLAMA31_8B)
    for key, value in change.items():
        if value is None:
            info.pop(key)
        else:
            info[key] = value
    with pytest.raises(ctx.ShapeError) as err:
        ctx.shape(info)
    assert str(err.value) == says


def test_no_model_info_at_all():
    with pytest.raises(ctx.ShapeError) as err:
        ctx.shape({})
    assert "no model_info" in str(err.value)


def test_kv_cache_types():
    assert [ctx.kv_cache_type(v) for v in ("", None, "F16", "q8_0", "q4_0")] == ["f16", "f16", "f16", "q8_0", "q4_0"]
    with pytest.raises(ValueError) as err:
        ctx.kv_cache_type("q5_1")
    assert str(err.value) == "kv_cache_type q5_1 is not one Ollama takes: f16, q8_0 or q4_0"


def test_the_table_in_docs_codex_md_is_what_the_module_chooses(rx7900_free, rtx2080_memory):
    """docs/codex.md shows the contexts for these shapes on the two recorded GPUs; they must be these functions'."""
    rows = [line for line in (REPO / "docs" / "codex.md").read_text().splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().split(" ")[0] in SHAPES]
    assert len(rows) == len(SHAPES)
    for line in rows:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        model = cells[0].split(" ")[0]
        shown = [v.strip() for cell in cells[1:] for v in cell.split("/")]
        shown = shown[:4] + (shown[4:] if len(shown) == 8 else [v for v in shown[4:] for _twice in (0, 1)])
        expected = []
        for memory in (rx7900_free, rtx2080_memory):
            for parallel, cache_type in ((1, "f16"), (2, "f16"), (1, "q8_0"), (2, "q8_0")):
                figures = plan(model, memory, parallel, cache_type)
                expected.append("%s%s" % (figures["context"] or "none", "" if figures["fits_min"] else "*"))
        assert shown == expected, model
