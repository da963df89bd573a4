"""A tiny real language model for the lab: a llama-architecture GGUF whose answer to any prompt is scripted.

The weights are laid out so the output does not depend on the prompt: every token's embedding is a one-hot
"state" (state k means "the last token was reply token k"; every other token is state 0), the two transformer
blocks are random but small next to that, and the output matrix maps state 0 to the first reply token, state k to
reply token k+1 and the last one to `</s>`. So `ollama run`, `/api/generate`, `/v1/responses` and `codex exec`
all get the same reply, with greedy or sampled decoding, and stop after it. About 600 KB of F32 tensors; it loads
in a fraction of a second and generates hundreds of tokens a second on one CPU thread.

The tokenizer is SentencePiece-style (`tokenizer.ggml.model = "llama"`): `<unk>`, `<s>`, `</s>`, the 256 byte
tokens, and a few hundred word pieces (with the prefixes SentencePiece needs to reach them by merges), so that
prompts of a few thousand words take a few thousand tokens. The same reply always gives the same bytes.

A reply whose word pieces repeat (a JSON tool call repeats `"`) is given as explicit pieces instead, each one token,
all distinct: ['{"name":', ' "report_ready",', ' "arguments":', ' {}}'] (TOOL_CALL_PIECES) makes the model answer
`{"name": "report_ready", "arguments": {}}`, which Ollama turns into a tool call for a template that mentions .Tools.

    python3 -m tests.lab.tiny_gguf OUT.gguf [--reply " Hello from tiny!" | --pieces '["{\"name\":", ...]']
"""
import argparse
import hashlib
import json
import os
import tempfile

SPACE = "\u2581"  # SentencePiece's word boundary
CONTEXT = 32768
EMBED, HEADS, FFN, BLOCKS = 64, 4, 128, 2
# Words common in prompts (Codex's instructions among them): they keep prompts short in tokens.
WORDS = """the a an to of and or in on at is are be was were it its this that these those for with as by from
you your we our they them he she i me my not no yes do does did can could should would will may must if then else
when where what which who how why all any each every some more most other into out up down over under about after
before file files code change changes run command commands tool tools user users model models task tasks test tests
use using used make made need needs work working write read edit new old one two three first last only also just
like so but than there here have has had get set see show use list name names path paths line lines text output
input error errors help please answer question reply message messages system assistant function call calls result
results value values type types return returns true false null none string number object array json shell bash git
repository project directory folder workspace sandbox approval policy network access mode modes plan plans step
steps update updates patch apply diff review instructions instruction context content request requests response
responses format markdown example examples always never keep follow following note notes important must avoid
""".split()
# Single characters: letters, digits, punctuation (anything else falls back to byte tokens).
CHARS = [chr(c) for c in range(33, 127)]
# A reply that calls the tool report_ready (no arguments), as Ollama's tool parser reads it: the whole answer is one
# JSON object with "name" and "arguments" (tools/tools.go; the tag is "{" for a template without .ToolCalls).
TOOL_CALL_PIECES = ['{"name":', ' "report_ready",', ' "arguments":', ' {}}']


def vocabulary(reply_pieces):
    """The token list: control tokens, bytes, characters, then word pieces with the prefixes merges need."""
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    seen = set(tokens)

    def add(piece):
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)

    add(SPACE)
    for ch in CHARS:
        add(ch)
        add(SPACE + ch)
    for word in sorted(set(WORDS) | {p.lstrip(SPACE) for p in reply_pieces}):
        for piece in (SPACE + word, word):
            for end in range(2, len(piece) + 1):
                add(piece[:end])
    for piece in reply_pieces:
        add(piece)
    return tokens


def reply_pieces(reply):
    """The reply as word pieces: ' Hello from tiny!' -> ['▁Hello', '▁from', '▁tiny', '!']."""
    pieces, word = [], ""
    for ch in reply.replace(" ", SPACE):
        if ch == SPACE or not (ch.isalnum() or ch == SPACE):
            if word:
                pieces.append(word)
            word = ch if ch == SPACE else ""
            if ch != SPACE:
                pieces.append(ch)
        else:
            word += ch
    if word:
        pieces.append(word)
    return _distinct(pieces)


def explicit_pieces(pieces):
    """Pieces given one by one, each one token of the reply (a space is SentencePiece's word boundary)."""
    return _distinct([p.replace(" ", SPACE) for p in pieces])


def _distinct(pieces):
    if not pieces or len(set(pieces)) != len(pieces) or len(pieces) >= EMBED or not all(pieces):
        raise ValueError("a scripted reply needs distinct pieces, fewer than %d: %r" % (EMBED, pieces))
    return pieces


def parameter_count(reply=" Hello from tiny!", pieces=None):
    """How many weights the model has (what Ollama shows as its parameter size, e.g. 281K)."""
    n_vocab = len(vocabulary(explicit_pieces(pieces) if pieces else reply_pieces(reply)))
    block = 2 * EMBED + 4 * EMBED * EMBED + 3 * EMBED * FFN
    return 2 * n_vocab * EMBED + BLOCKS * block + EMBED


def write(path, reply=" Hello from tiny!", name="tiny", pieces=None):
    """Write the GGUF to `path` (atomically); it answers `reply`, or the explicit `pieces` when given (then `reply`
    is ignored). Returns its sha256 hex."""
    import gguf
    import numpy as np

    if pieces:
        reply = "".join(pieces)
        pieces = explicit_pieces(pieces)
    else:
        pieces = reply_pieces(reply)
    tokens = vocabulary(pieces)
    index = {t: i for i, t in enumerate(tokens)}
    n_vocab = len(tokens)
    rng = np.random.default_rng(int(hashlib.sha256(reply.encode()).hexdigest()[:8], 16))

    embd = np.zeros((n_vocab, EMBED), dtype=np.float32)
    embd[:, 0] = 1.0  # state 0: any token that is not part of the reply
    for k, piece in enumerate(pieces, start=1):
        embd[index[piece]] = 0.0
        embd[index[piece], k] = 1.0
    output = np.zeros((n_vocab, EMBED), dtype=np.float32)
    chain = [index[p] for p in pieces] + [index["</s>"]]
    for state, token in enumerate(chain):
        output[token, state] = 4.0  # after the final norm a one-hot is ~8, so the wanted token leads by ~32

    def small(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    ones = np.ones(EMBED, dtype=np.float32)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tiny-", suffix=".gguf")
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, "llama")
        w.add_name(name)
        w.add_context_length(CONTEXT)
        w.add_embedding_length(EMBED)
        w.add_block_count(BLOCKS)
        w.add_feed_forward_length(FFN)
        w.add_head_count(HEADS)
        w.add_head_count_kv(HEADS)
        w.add_rope_dimension_count(EMBED // HEADS)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_file_type(gguf.LlamaFileType.ALL_F32)
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores([0.0] * 3 + [0.0] * 256 + [float(len(t)) for t in tokens[259:]])
        types = ([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
                 + [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (n_vocab - 259))
        w.add_token_types(types)
        w.add_unk_token_id(0)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        w.add_tensor("token_embd.weight", embd)
        for b in range(BLOCKS):
            w.add_tensor("blk.%d.attn_norm.weight" % b, ones)
            for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
                w.add_tensor("blk.%d.%s.weight" % (b, part), small(EMBED, EMBED))
            w.add_tensor("blk.%d.ffn_norm.weight" % b, ones)
            w.add_tensor("blk.%d.ffn_gate.weight" % b, small(FFN, EMBED))
            w.add_tensor("blk.%d.ffn_up.weight" % b, small(FFN, EMBED))
            w.add_tensor("blk.%d.ffn_down.weight" % b, small(EMBED, FFN))
        w.add_tensor("output_norm.weight", ones)
        w.add_tensor("output.weight", output)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m tests.lab.tiny_gguf")
    parser.add_argument("out")
    parser.add_argument("--reply", default=" Hello from tiny!")
    parser.add_argument("--pieces", help="the reply as a JSON list of distinct pieces, one token each")
    args = parser.parse_args(argv)
    print(write(args.out, args.reply, pieces=json.loads(args.pieces) if args.pieces else None))


if __name__ == "__main__":
    main()
