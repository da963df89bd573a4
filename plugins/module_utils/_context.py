# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long a context a model can have on a host: the KV cache it needs per token, and the largest context that fits.

Pure functions, no I/O. ``plan(model_info, weights_bytes, available_bytes, ...)`` takes a model's ``model_info`` as
Ollama's ``/api/show`` returns it (the GGUF header's keys), the model's size, the memory free for it (free VRAM of the
usable GPUs, or RAM on a CPU host), ``OLLAMA_NUM_PARALLEL`` and ``OLLAMA_KV_CACHE_TYPE``, and returns every figure:
KV bytes per token, weights, compute and margin, what is free, the context chosen and whether the minimum fits.
``failure_message`` turns a plan whose minimum does not fit into a sentence naming those figures and what to do.

What is followed, read from Ollama v0.34.4 (the release the server role installs) and the llama.cpp it runs:

- Ollama runs GGUF models with llama.cpp's ``llama-server``, started with ``-c <num_ctx * num_parallel> -np
  <num_parallel>`` and ``--cache-type-k/-v <OLLAMA_KV_CACHE_TYPE>`` (llm/llama_server.go, startLlamaServer), after
  clamping num_ctx to the model's own ``<arch>.context_length`` (llm/server.go, NewLlamaServer). So the context a
  request gets is the configured one, and the cache holds it once per parallel slot.
- llama-server allocates the KV cache (llama.cpp src/llama-kv-cache.cpp): per layer, keys of
  ``head_count_kv(layer) * key_length`` and values of ``head_count_kv(layer) * value_length`` elements per cell, where
  key_length and value_length default to ``embedding_length / head_count`` (src/llama-hparams.cpp, n_embd_k_gqa and
  n_embd_v_gqa). An explicit ``-np`` leaves the cache unified off: one stream of num_ctx cells per slot
  (src/llama-context.cpp, n_ctx_seq = n_ctx / n_seq_max). Layers with sliding-window attention keep only
  ``pad(min(num_ctx, sliding_window + n_ubatch), 256)`` cells per slot (src/llama-kv-cache-iswa.cpp, size_swa).
  Models with multi-head latent attention (``attention.key_length_mla``) keep no separate values. Layers without
  attention heads (hybrid recurrent models) keep a state that does not grow with the context, counted as Ollama's
  own estimate counts it (fs/ggml/ggml.go GraphSize in v0.32.15: f32, conv and SSM state), once per slot.
- Bytes per element are ggml's: f16 2, q8_0 34 per 32, q4_0 18 per 32 (ggml's block sizes). Ollama's older
  estimate (fs/ggml/ggml.go, kvCacheBytesPerElement) rounds the last two to 1 and 0.5; the blocks' scales are real
  memory, so they are counted here.
- Compute buffers: Ollama's scheduler picks a batch of 2048 for contexts over 32768 (in total over the slots), 1024
  over 4096, else 512, lowering it while its own estimate leaves too little room, and counts 2 GiB for 2048 and
  768 MiB for 1024 above the weights and cache (server/sched.go, automaticGenerationBatch, generationBatchFits,
  generationBatchSurcharge; its estimate is llm/llama_server.go PredictServerVRAM). The same choice is made here,
  and the batch is also llama-server's micro-batch, which sliding-window layers keep room for.
- Margin: llama-server fits layers on each GPU so that 1024 MiB stay free (its ``--fit-target``, default 1024 MiB per
  device; Ollama sets LLAMA_ARG_FIT_TARGET only for vision projectors). A model that needs more than what is free less
  that margin gets layers moved to the CPU: slower, not a failure. So "fits" here means fits in the GPUs' free memory
  with that margin left on each; on a CPU host the same 1 GiB is kept free of the RAM available.

The context is chosen in steps of 1024 tokens, not powers of two: a power of two would halve the choice (a GPU with
room for 90000 tokens would get 65536), while every multiple of 1024 is one llama.cpp takes as it is (it pads the
context, and each slot's share, to a multiple of 256), and the models' own limits (40960, 131072, 262144) are
multiples of 1024 too. A limit that is not is itself a candidate.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

MIB = 1024 ** 2
GIB = 1024 ** 3
STEP = 1024
MIN_CONTEXT = 65536
# llama-server's --fit-target default: memory left free on each GPU when it places the layers.
FIT_MARGIN_BYTES = 1024 * MIB
# ggml block sizes: (bytes per block, elements per block) of the KV cache types Ollama accepts (OLLAMA_KV_CACHE_TYPE).
KV_TYPES = {"f16": (2, 1), "q8_0": (34, 32), "q4_0": (18, 32)}
# Architectures Ollama runs with one slot whatever OLLAMA_NUM_PARALLEL says (server/sched.go, load).
SINGLE_SLOT_ARCHITECTURES = ("mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2", "lfm2moe",
                             "nemotron_h", "nemotron_h_moe", "nemotron_h_omni")
# Which layers use a sliding window, where the GGUF has no attention.sliding_window_pattern: llama.cpp's
# src/llama-model.cpp (load_hparams) sets it per architecture with set_swa_pattern(n): layer il slides when
# il % n < n - 1 (every n-th layer is global). gpt-oss is "gptoss" in Ollama's GGUF files, "gpt-oss" in llama.cpp's.
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "gptoss": 2, "gpt-oss": 2, "cohere2": 4}
# The window llama.cpp assumes when the GGUF does not say (gemma2: "default value of gemma 2").
SWA_DEFAULT_WINDOW = {"gemma2": 4096}
# Ollama's scheduler (server/sched.go): batch by context, the headroom each batch needs, and what it counts for it.
BATCH_SURCHARGE = {2048: 2 * GIB, 1024: 768 * MIB, 512: 0}
BATCH_HEADROOM_PERCENT = {2048: 60, 1024: 75}


class ShapeError(ValueError):
    """model_info lacks what the KV cache's size depends on, or has it in a form no GGUF has."""


def kv_cache_type(value):
    """'' and None are f16 (llama.cpp's default, what Ollama runs without OLLAMA_KV_CACHE_TYPE); else f16, q8_0, q4_0."""
    value = (value or "f16").strip().lower()
    if value not in KV_TYPES:
        raise ValueError("kv_cache_type %s is not one Ollama takes: f16, q8_0 or q4_0" % value)
    return value


def _bytes(elements, cache_type):
    block_bytes, block_elements = KV_TYPES[cache_type]
    return elements * block_bytes // block_elements


def _number(info, key, required=True, default=None):
    value = info.get(key)
    if value is None:
        if required:
            raise ShapeError("model_info has no %s" % key)
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ShapeError("model_info's %s is %r, not a whole number" % (key, value))
    return value


def _per_layer(info, key, layers, default):
    """A value that is one number, or one per layer (a GGUF array, as /api/show returns it), as a list per layer.
    An array must have one value per layer, as llama.cpp reads it (llama-model-loader.cpp, get_key_or_arr)."""
    value = info.get(key)
    if value is None:
        return list(default) if isinstance(default, list) else [default] * layers
    if isinstance(value, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            raise ShapeError("model_info's %s is %r, not whole numbers per layer" % (key, value))
        if len(value) != layers:
            raise ShapeError("model_info's %s has %d values for %d layers" % (key, len(value), layers))
        return list(value)
    return [_number(info, key)] * layers


def _swa_layers(info, arch, layers):
    """Which layers slide, and the window: from attention.sliding_window(_pattern) or the architecture's pattern."""
    window = _number(info, arch + ".attention.sliding_window", required=False) or SWA_DEFAULT_WINDOW.get(arch, 0)
    if not window:
        return [False] * layers, 0
    pattern = info.get(arch + ".attention.sliding_window_pattern")
    if isinstance(pattern, list):  # per layer, true where the layer slides (Ollama's convert_gemma3.go writes it so)
        if len(pattern) != layers or not all(isinstance(p, bool) for p in pattern):
            raise ShapeError("model_info's %s.attention.sliding_window_pattern is %r, not true/false for each of "
                             "%d layers" % (arch, pattern, layers))
        return list(pattern), window
    # a number is a period, as Gemma's config.json means sliding_window_pattern: every n-th layer is global
    every = pattern if isinstance(pattern, int) and not isinstance(pattern, bool) else SWA_PATTERNS.get(arch)
    if not every:  # a window but no known layout: counted as full attention (more than it may need, never less)
        return [False] * layers, window
    return [il % every < every - 1 for il in range(layers)], window


def shape(model_info):
    """What the KV cache's size depends on, read from `model_info`; raises ShapeError naming a missing key."""
    if not isinstance(model_info, dict) or not model_info:
        raise ShapeError("the server returned no model_info for it (a model without a GGUF header, such as a cloud "
                         "or safetensors model)")
    arch = model_info.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ShapeError("model_info has no general.architecture")
    layers = _number(model_info, arch + ".block_count")
    limit = _number(model_info, arch + ".context_length")
    if not layers or not limit:
        raise ShapeError("model_info's %s is 0" % (arch + (".block_count" if not layers else ".context_length")))
    heads = _per_layer(model_info, arch + ".attention.head_count", layers, None)
    if heads[0] is None:
        raise ShapeError("model_info has no %s.attention.head_count" % arch)
    first_heads = heads[0] or max(heads)
    # llama.cpp: n_head_kv defaults to n_head, layer by layer (no grouping), when the GGUF does not say
    kv_heads = _per_layer(model_info, arch + ".attention.head_count_kv", layers, heads)
    key_length = _number(model_info, arch + ".attention.key_length", required=False)
    value_length = _number(model_info, arch + ".attention.value_length", required=False)
    if key_length is None or value_length is None:
        embedding = _number(model_info, arch + ".embedding_length", required=False)
        if not embedding or not first_heads:
            raise ShapeError("model_info has neither %s.attention.key_length/value_length nor %s.embedding_length "
                             "to size the keys and values by" % (arch, arch))
        key_length = embedding // first_heads if key_length is None else key_length
        value_length = embedding // first_heads if value_length is None else value_length
    key_swa = _number(model_info, arch + ".attention.key_length_swa", required=False, default=key_length)
    value_swa = _number(model_info, arch + ".attention.value_length_swa", required=False, default=value_length)
    mla = model_info.get(arch + ".attention.key_length_mla") is not None
    slides, window = _swa_layers(model_info, arch, layers)
    recurrent = 0
    conv = _number(model_info, arch + ".ssm.conv_kernel", required=False, default=0)
    state = _number(model_info, arch + ".ssm.state_size", required=False, default=0)
    inner = _number(model_info, arch + ".ssm.inner_size", required=False, default=0)
    groups = _number(model_info, arch + ".ssm.group_count", required=False, default=0)
    per_layer = []
    for il in range(layers):
        if heads[il] and kv_heads[il]:
            k, v = (key_swa, value_swa) if slides[il] else (key_length, value_length)
            per_layer.append(dict(k=kv_heads[il] * k, v=0 if mla else kv_heads[il] * v, swa=slides[il]))
        else:  # no attention here: a recurrent layer's state (f32), or nothing for an MLP-only block
            conv_state = (conv - 1) * (inner + 2 * groups * state) if conv else 0
            recurrent += (conv_state + state * inner) * 4
            per_layer.append(dict(k=0, v=0, swa=False))
    return dict(architecture=arch, layers=layers, context_length=limit, key_length=key_length,
                value_length=value_length, kv_heads_min=min(kv_heads), kv_heads_max=max(kv_heads),
                head_count_max=max(heads), embedding_length=model_info.get(arch + ".embedding_length"),
                sliding_window=window, swa_layers=sum(1 for p in per_layer if p["swa"] and p["k"]),
                attention_layers=sum(1 for p in per_layer if p["k"]), per_layer=per_layer,
                recurrent_bytes_per_slot=recurrent, mla=mla)


def _pad(value, to=256):
    return -(-value // to) * to


def kv_bytes(model_shape, context, num_parallel=1, cache_type="f16", ubatch=512):
    """The KV cache llama-server allocates for `context` tokens per slot and `num_parallel` slots, in bytes."""
    cells_full = context * num_parallel
    cells_swa = _pad(min(context, model_shape["sliding_window"] + ubatch)) * num_parallel
    total = 0
    for layer in model_shape["per_layer"]:
        cells = cells_swa if layer["swa"] else cells_full
        total += _bytes(layer["k"] * cells, cache_type) + _bytes(layer["v"] * cells, cache_type)
    return total + model_shape["recurrent_bytes_per_slot"] * num_parallel


def bytes_per_token(model_shape, cache_type="f16"):
    """KV bytes each token of context costs per slot: the layers with full attention (sliding ones stop growing at
    their window)."""
    width = sum(p["k"] + p["v"] for p in model_shape["per_layer"] if not p["swa"])
    return _bytes(width, cache_type)


def ollama_predicted(model_shape, weights_bytes, total_context):
    """Ollama's own estimate of a model's memory (llm/llama_server.go, PredictServerVRAM): the weights plus an f16
    cache of 2 x layers x the fewest KV heads x embedding/most heads per token. The scheduler picks the batch by it."""
    heads_max = model_shape["head_count_max"] or 0
    head_dim = (model_shape["embedding_length"] or 0) // heads_max if heads_max else 0
    kv_heads = model_shape["kv_heads_min"] or 1
    return weights_bytes + 2 * model_shape["layers"] * kv_heads * head_dim * total_context * 2


def generation_batch(total_context, predicted, available):
    """The batch Ollama's scheduler runs a completion model with (server/sched.go, automaticGenerationBatch, with
    flash attention on or auto, Ollama's default)."""
    batch = 2048 if total_context > 32768 else 1024 if total_context > 4096 else 512
    while batch > 512 and not _batch_fits(batch, predicted, available):
        batch = 1024 if batch > 1024 else 512
    return batch


def _batch_fits(batch, predicted, available):
    if not predicted or not available:
        return True
    threshold = available * 80 // 100
    if predicted > threshold:
        return False
    if batch in BATCH_HEADROOM_PERCENT and predicted > available * BATCH_HEADROOM_PERCENT[batch] // 100:
        return False
    return BATCH_SURCHARGE[batch] <= threshold - predicted


def need(model_shape, context, weights_bytes, available_bytes, num_parallel=1, cache_type="f16", devices=1,
         margin_bytes=FIT_MARGIN_BYTES):
    """What `context` tokens per slot take on this host: a dict of kv, compute, margin and the total, in bytes."""
    total_context = context * num_parallel
    batch = generation_batch(total_context, ollama_predicted(model_shape, weights_bytes, total_context),
                             available_bytes)
    kv = kv_bytes(model_shape, context, num_parallel, cache_type, batch)
    compute = BATCH_SURCHARGE[batch]
    margin = margin_bytes * max(devices, 1)
    return dict(context=context, kv_bytes=kv, batch=batch, compute_bytes=compute, margin_bytes=margin,
                overhead_bytes=compute + margin, weights_bytes=weights_bytes,
                total_bytes=weights_bytes + kv + compute + margin)


def _candidate(limit, i):
    """The i-th context that can be chosen, smallest first: 1024, 2048, ... and the model's limit last."""
    return (i + 1) * STEP if i < limit // STEP else limit


def _last_true(lo, hi, test):
    """The largest i in [lo, hi] for which test(i) holds, where it holds up to a point and not after; lo - 1 if none."""
    hi += 1
    while lo < hi:
        mid = (lo + hi) // 2
        if test(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


def largest_fit(model_shape, weights_bytes, available_bytes, num_parallel, cache_type, devices, margin_bytes):
    """The need() of the largest context that fits, or None.

    What a context needs grows with it while the batch stays the same, but the batch Ollama picks does not only grow:
    512 up to 4096 tokens in all, 1024 to 32768, 2048 above, each only while Ollama's own estimate leaves it room,
    which it stops doing as the context grows. So the contexts are cut where the batch can change (each such point
    found by bisection, as each test holds up to a point), and each stretch of one batch is bisected for the largest
    context that fits, from the top: a few dozen sizings, where trying every 1024 tokens of a 10M-token model would be
    ten thousand.
    """
    limit = model_shape["context_length"]
    count = limit // STEP + (1 if limit % STEP else 0)

    def total(i):
        return _candidate(limit, i) * num_parallel

    def batch_fits(batch):
        return lambda i: _batch_fits(batch, ollama_predicted(model_shape, weights_bytes, total(i)), available_bytes)

    cuts = [_last_true(0, count - 1, lambda i: total(i) <= 4096), _last_true(0, count - 1, lambda i: total(i) <= 32768),
            _last_true(0, count - 1, batch_fits(1024)), _last_true(0, count - 1, batch_fits(2048))]

    def sized(i):
        return need(model_shape, _candidate(limit, i), weights_bytes, available_bytes, num_parallel, cache_type,
                    devices, margin_bytes)

    cuts = sorted(set([-1, count - 1] + cuts))
    for lo, hi in reversed(list(zip(cuts, cuts[1:]))):
        best = _last_true(lo + 1, hi, lambda i: sized(i)["total_bytes"] <= available_bytes)
        if best > lo:
            return sized(best)
    return None


def plan(model_info, weights_bytes, available_bytes, num_parallel=1, cache_type="f16", min_context=MIN_CONTEXT,
         devices=1, margin_bytes=FIT_MARGIN_BYTES, capabilities=None):
    """The largest context (tokens per request) that fits, and every figure behind it. Raises ShapeError, ValueError.

    `available_bytes` is the memory free for the model (the usable GPUs' free VRAM together, or RAM on a CPU host);
    `devices` the number of GPUs it is spread over (each keeps the margin free; 1 for RAM). `capabilities` are
    /api/show's: a model without "completion" (an embedding model) runs with one slot, as Ollama runs it.
    """
    cache_type = kv_cache_type(cache_type)
    if not isinstance(min_context, int) or min_context < 1:
        raise ValueError("min_context must be a positive number of tokens, not %r" % (min_context,))
    model_shape = shape(model_info)
    asked_parallel = max(int(num_parallel or 1), 1)
    parallel = asked_parallel
    why_one = None
    if model_shape["architecture"] in SINGLE_SLOT_ARCHITECTURES and parallel != 1:
        parallel, why_one = 1, "Ollama runs %s models one request at a time" % model_shape["architecture"]
    if capabilities is not None and "completion" not in capabilities and parallel != 1:
        parallel, why_one = 1, "Ollama runs embedding models one request at a time"
    limit = model_shape["context_length"]
    figures = dict(
        architecture=model_shape["architecture"], layers=model_shape["layers"],
        attention_layers=model_shape["attention_layers"], sliding_window_layers=model_shape["swa_layers"],
        sliding_window=model_shape["sliding_window"], kv_heads=model_shape["kv_heads_max"],
        key_length=model_shape["key_length"], value_length=model_shape["value_length"],
        model_context_length=limit, kv_cache_type=cache_type, num_parallel=parallel,
        num_parallel_asked=asked_parallel, num_parallel_note=why_one,
        kv_bytes_per_token=bytes_per_token(model_shape, cache_type),
        weights_bytes=int(weights_bytes), available_bytes=int(available_bytes), devices=max(devices, 1),
        min_context=min_context, step=STEP)
    chosen = largest_fit(model_shape, weights_bytes, available_bytes, parallel, cache_type, devices, margin_bytes)
    at_min = need(model_shape, min_context, weights_bytes, available_bytes, parallel, cache_type, devices,
                  margin_bytes)
    figures.update(context=chosen["context"] if chosen else None,
                   need_at_min_bytes=at_min["total_bytes"], kv_at_min_bytes=at_min["kv_bytes"],
                   overhead_at_min_bytes=at_min["overhead_bytes"], batch_at_min=at_min["batch"],
                   memory_fits_min=at_min["total_bytes"] <= available_bytes,
                   model_allows_min=limit >= min_context)
    if chosen:
        figures.update(kv_bytes=chosen["kv_bytes"], compute_bytes=chosen["compute_bytes"],
                       margin_bytes=chosen["margin_bytes"], overhead_bytes=chosen["overhead_bytes"],
                       batch=chosen["batch"], need_bytes=chosen["total_bytes"],
                       limited_by="model" if chosen["context"] == limit else "memory")
    else:
        figures.update(kv_bytes=None, compute_bytes=None, margin_bytes=at_min["margin_bytes"], overhead_bytes=None,
                       batch=None, need_bytes=None, limited_by="memory")
    figures["fits_min"] = bool(chosen) and chosen["context"] >= min_context
    figures["alternatives"] = _alternatives(model_shape, figures, weights_bytes, available_bytes, devices,
                                            margin_bytes)
    return figures


def _alternatives(model_shape, figures, weights_bytes, available_bytes, devices, margin_bytes):
    """For a minimum that does not fit in memory: what the minimum would need with one slot, or a smaller cache."""
    if figures["memory_fits_min"]:
        return []
    tries = []
    parallel, cache_type = figures["num_parallel"], figures["kv_cache_type"]
    smaller = [t for t in ("q8_0", "q4_0") if KV_TYPES[t][0] * KV_TYPES[cache_type][1] <
               KV_TYPES[cache_type][0] * KV_TYPES[t][1]]
    if parallel > 1:
        tries.append(("num_parallel 1", 1, cache_type))
    tries += [("a %s KV cache" % t, parallel, t) for t in smaller]
    if parallel > 1:
        tries += [("num_parallel 1 and a %s KV cache" % t, 1, t) for t in smaller]
    out = []
    for label, parallel, cache_type in tries:
        figure = need(model_shape, figures["min_context"], weights_bytes, available_bytes, parallel, cache_type,
                      devices, margin_bytes)
        out.append(dict(change=label, num_parallel=parallel, kv_cache_type=cache_type,
                        need_bytes=figure["total_bytes"], fits=figure["total_bytes"] <= available_bytes))
    return out


def gib(size):
    return "%.2f GiB" % (size / float(GIB))


def failure_message(where, model, figures):
    """Why the minimum context does not fit, with the figures and what to do; None when it fits."""
    if figures["fits_min"]:
        return None
    if not figures["model_allows_min"]:
        text = ("%s: %s holds at most %d tokens (its context_length), below the %d minimum; choose a model with a "
                "longer context, or lower the minimum (min_context)"
                % (where, model, figures["model_context_length"], figures["min_context"]))
        if figures["context"]:
            text += "; %d fits in memory here" % figures["context"]
        return text + "."
    slots = "%d parallel" % figures["num_parallel"]
    if figures["num_parallel_note"]:
        slots += " (%s)" % figures["num_parallel_note"]
    text = ("%s: %s needs %s for a %d context with %s (KV %s: %s, weights %s, compute and margin %s) but %s are free"
            % (where, model, gib(figures["need_at_min_bytes"]), figures["min_context"], slots,
               figures["kv_cache_type"], gib(figures["kv_at_min_bytes"]), gib(figures["weights_bytes"]),
               gib(figures["overhead_at_min_bytes"]), gib(figures["available_bytes"])))
    if figures["context"]:
        text += "; %d tokens would fit." % figures["context"]
    else:
        text += "; not even %d tokens fit." % STEP
    fitting = [a for a in figures["alternatives"] if a["fits"]]
    single = [a for a in fitting if " and " not in a["change"]]
    fitting = single or fitting[:1]
    if fitting:
        text += " It would fit with %s." % "; with ".join("%s (%s)" % (a["change"], gib(a["need_bytes"]))
                                                          for a in fitting)
        todo = []
        if any(a["num_parallel"] < figures["num_parallel"] for a in fitting):
            todo.append("lower num_parallel (ollama_server_num_parallel)")
        if any(a["kv_cache_type"] != figures["kv_cache_type"] for a in fitting):
            todo.append("use a smaller KV cache (ollama_server_kv_cache_type; q8_0 and q4_0 need flash attention)")
    else:
        if figures["alternatives"]:
            least = min(figures["alternatives"], key=lambda a: a["need_bytes"])
            text += " Even with %s it would need %s." % (least["change"], gib(least["need_bytes"]))
        todo = []
    todo += ["choose a smaller model or a GPU with more free memory",
             "or set a smaller context by hand (ollama_server_context_length)"]
    first = todo[0][0].upper() + todo[0][1:]
    return "%s %s." % (text, ", ".join([first] + todo[1:]))
