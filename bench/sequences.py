"""Issue 24's figures: a character-level GPT, ours against the same model in torch.nn, one thread.

    python bench/sequences.py                 # every section (a few minutes on a quiet core)
    python bench/sequences.py --only step,generate
    python bench/sequences.py --quick         # a sanity run: fewer steps and repeats

The model (both sides, built from the same weights): embedding + learned positions, 2
pre-norm transformer blocks of width 64 with 4 heads (attention, then a 4x GELU MLP), a
final layernorm and the logits; context 64; AdamW (lr 1e-3, weight decay 0.01). The data:
the pydoc corpus (pydoc_data.topics, 103 characters), its last 10% held out. torch.nn's
side is nanoGPT's shape: nn.Embedding, nn.LayerNorm, nn.Linear, nn.GELU, and
F.scaled_dot_product_attention(is_causal=True), autograd and torch.optim.AdamW.

Sections:
  equal     20 AdamW steps in float64 from the same weights on the same batches: the largest
            difference between the two sides' parameters
  step      one training step (forward, loss, backward, AdamW) in float32 at batch 32 and 1:
            the two sides alternating, medians over repeats; and the peak of live tensor
            memory over 5 steps of each (torch's profiler, as bench/speed.py measures it)
  generate  256 tokens sampled after a short prompt, batch 1, float32: ours with the
            key/value cache, torch.nn with its own cached loop (keys and values kept the
            same way; drawing with softmax + torch.multinomial as nanoGPT does, and again
            with our draw, to tell the network's time from the draw's), and ours recomputing
            the window for every token; tokens per second. Twice: the model above (context
            64: no window is longer than 64), and one of `nn-cli train --data pydoc`'s size
            (width 128, 3 blocks) with a context of 256, which holds the prompt and all but
            the last 4 tokens (then, on both sides, one restart from the last 128)
  quality   both sides trained the same number of steps on the same batches (float32):
            held-out bits per character on the last 10%
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from images import alternating_medians  # noqa: E402: timed the same way as bench/images.py
from speed import peak_bytes  # noqa: E402: the same memory measure as bench/speed.py

from core import build_stack, default_registry, no_input_grad, parse_layers  # noqa: E402
from core.data.text import Vocabulary, pydoc_text  # noqa: E402
from core.network.sampling import Sampling, sample  # noqa: E402

CONTEXT, WIDTH, HEADS, BLOCKS = 64, 64, 4, 2
LR, DECAY = 1e-3, 0.01


@dataclass(frozen=True)
class Shape:
    """The GPT's size, the same on both sides."""

    context: int = CONTEXT
    width: int = WIDTH
    heads: int = HEADS
    blocks: int = BLOCKS


SMALL = Shape()  # the reference model, every section's
LONG = Shape(context=256, width=128, heads=4, blocks=3)  # `nn-cli train --data pydoc`'s size, a 256-token context


def gpt_text(vocab: int, shape: Shape = SMALL) -> str:
    return (f"embedding:vocab={vocab},width={shape.width},position,"
            f"{shape.blocks}*transformer_block:heads={shape.heads},layernorm,linear:out={vocab}")


# -- the torch.nn side ------------------------------------------------------------------------

class TorchAttention(nn.Module):
    def __init__(self, shape=SMALL):
        super().__init__()
        self.width, self.n_heads = shape.width, shape.heads
        self.c_attn, self.c_proj = nn.Linear(self.width, 3 * self.width), nn.Linear(self.width, self.width)
        self.k = self.v = None  # the key/value cache while sampling
        self.kept = 0

    def heads(self, t, batch, time):
        return t.view(batch, time, self.n_heads, self.width // self.n_heads).transpose(1, 2)  # (b, h, t, hw)

    def forward(self, x):
        batch, time, _ = x.shape
        q, k, v = (self.heads(t, batch, time) for t in self.c_attn(x).split(self.width, dim=2))
        if self.k is not None:  # sampling: keep this call's keys and values, attend to all kept
            start, self.kept = self.kept, self.kept + time
            self.k[:, :, start:self.kept], self.v[:, :, start:self.kept] = k, v
            k, v = self.k[:, :, :self.kept], self.v[:, :, :self.kept]
            causal = start == 0  # a prefill from empty: causal; one new token: sees every key
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal and time > 1)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(batch, time, self.width))


class TorchBlock(nn.Module):
    def __init__(self, shape=SMALL):
        super().__init__()
        width = shape.width
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(width), TorchAttention(shape), nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TorchGPT(nn.Module):
    def __init__(self, vocab, shape=SMALL):
        super().__init__()
        self.shape = shape
        self.wte, self.wpe = nn.Embedding(vocab, shape.width), nn.Embedding(shape.context, shape.width)
        self.blocks = nn.ModuleList(TorchBlock(shape) for _ in range(shape.blocks))
        self.ln_f, self.head = nn.LayerNorm(shape.width), nn.Linear(shape.width, vocab)
        self.offset = 0

    def forward(self, ids):
        time = ids.shape[1]
        positions = torch.arange(self.offset, self.offset + time)
        if self.blocks[0].attn.k is not None:  # sampling: the next call goes on from here
            self.offset += time
        x = self.wte(ids) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def start_cache(self, batch):
        self.offset = 0
        s = self.shape
        for block in self.blocks:
            shape = (batch, s.heads, s.context, s.width // s.heads)
            block.attn.k, block.attn.v, block.attn.kept = torch.zeros(shape), torch.zeros(shape), 0


def torch_twin(ours, vocab, dtype, shape=SMALL):
    """torch.nn's GPT holding our network's weights (ours: linear weights are (in, out))."""
    twin = TorchGPT(vocab, shape).to(dtype)
    emb, pos, *blocks, ln_f, head = ours.modules
    with torch.no_grad():
        twin.wte.weight.copy_(emb.weight.value)
        twin.wpe.weight.copy_(pos.weight.value)
        for block, theirs in zip(blocks, twin.blocks, strict=True):
            (ln1, attn), (ln2, fc, _, proj) = (r.modules for r in block.modules)
            copy_norm(theirs.ln_1, ln1), copy_norm(theirs.ln_2, ln2)
            theirs.attn.c_attn.weight.copy_(attn.qkv_weight.value.T)
            theirs.attn.c_attn.bias.copy_(attn.qkv_bias.value)
            theirs.attn.c_proj.weight.copy_(attn.out_weight.value.T)
            theirs.attn.c_proj.bias.copy_(attn.out_bias.value)
            copy_linear(theirs.mlp[0], fc), copy_linear(theirs.mlp[2], proj)
        copy_norm(twin.ln_f, ln_f), copy_linear(twin.head, head)
    return twin


def copy_norm(theirs, ours):
    theirs.weight.copy_(ours.weight.value), theirs.bias.copy_(ours.bias.value)


def copy_linear(theirs, ours):
    theirs.weight.copy_(ours.weight.value.T), theirs.bias.copy_(ours.bias.value)


def torch_params(twin):
    """The torch side's parameters in our order and layout."""
    out = [twin.wte.weight, twin.wpe.weight]
    for b in twin.blocks:
        out += [b.ln_1.weight, b.ln_1.bias, b.attn.c_attn.weight.T, b.attn.c_attn.bias,
                b.attn.c_proj.weight.T, b.attn.c_proj.bias, b.ln_2.weight, b.ln_2.bias,
                b.mlp[0].weight.T, b.mlp[0].bias, b.mlp[2].weight.T, b.mlp[2].bias]
    return out + [twin.ln_f.weight, twin.ln_f.bias, twin.head.weight.T, twin.head.bias]


# -- the two sides, side by side --------------------------------------------------------------

class Pair:
    """Our GPT and torch.nn's from the same weights, each with its AdamW."""

    def __init__(self, registry, vocab, dtype, seed=0, shape=SMALL):
        self.vocab = vocab
        self.ours = build_stack(registry, parse_layers(gpt_text(vocab, shape), registry), (shape.context,),
                                init="xavier", generator=torch.Generator().manual_seed(seed), dtype=dtype)
        self.theirs = torch_twin(self.ours, vocab, dtype, shape)
        self.loss = registry.create("loss", "token_cross_entropy")
        self.optimizer = registry.create("optimizer", "adamw", parameters=self.ours.parameters(), lr=LR,
                                         weight_decay=DECAY)
        self.their_optimizer = torch.optim.AdamW(self.theirs.parameters(), lr=LR, weight_decay=DECAY)

    def our_step(self, x, y):
        with torch.set_grad_enabled(False), no_input_grad(self.ours):
            self.optimizer.zero_grad()
            value = self.loss.forward(self.ours.forward(x), y)
            self.ours.backward(self.loss.backward())
            self.optimizer.step()
        return value

    def their_step(self, x, y):
        self.their_optimizer.zero_grad()
        value = F.cross_entropy(self.theirs(x.long()).flatten(0, 1), y.long().flatten())
        value.backward()
        self.their_optimizer.step()
        return value


def batches(ids, count, batch, seed):
    """`count` batches of `batch` random windows of the training ids: (x, y) float rows."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        starts = torch.randint(0, len(ids) - CONTEXT - 1, (batch,), generator=g)
        rows = starts[:, None] + torch.arange(CONTEXT)  # (batch, context)
        yield ids[rows].double(), ids[rows + 1].double()


# -- sections ----------------------------------------------------------------------------------

def bench_equal(registry, vocab, train_ids, quick):
    pair = Pair(registry, vocab, torch.float64)
    for x, y in batches(train_ids, 20, 32, seed=1):
        pair.our_step(x, y)
        pair.their_step(x, y)
    ours = [p.value for p in pair.ours.parameters()]
    gap = max((a - b).abs().max().item() for a, b in zip(ours, torch_params(pair.theirs), strict=True))
    moved = max((p.value - q.value).abs().max().item() for p, q in
                zip(pair.ours.parameters(), Pair(registry, vocab, torch.float64).ours.parameters()))
    print(f"\n## equal: 20 AdamW steps, float64, batch 32\n\nlargest parameter difference: {gap:.3g} "
          f"(target <= 1e-10; the steps moved the parameters by up to {moved:.3g})", flush=True)


def bench_step(registry, vocab, train_ids, quick):
    print("\n## step: one training step, float32, one thread\n")
    print("| batch | ours (ms) | torch.nn (ms) | speed-up | ours peak MiB | torch.nn peak MiB | memory ratio |")
    print("|---|---|---|---|---|---|---|")
    for batch in (32, 1):
        pair = Pair(registry, vocab, torch.float32)
        (x, y), = batches(train_ids, 1, batch, seed=2)
        steps = 5 if batch == 32 else 20
        repeats = 3 if quick else 15

        def ours():
            for _ in range(steps):
                pair.our_step(x, y)

        def theirs():
            for _ in range(steps):
                pair.their_step(x, y)

        a, b = (t / steps for t in alternating_medians((ours, theirs), repeats))
        pa, pb = peak_bytes(ours, torch.device("cpu")), peak_bytes(theirs, torch.device("cpu"))
        print(f"| {batch} | {a * 1e3:.2f} | {b * 1e3:.2f} | {b / a:.2f}x | {pa / 2**20:.2f} | "
              f"{pb / 2**20:.2f} | {pa / pb:.2f} |", flush=True)


def multinomial_draw(logits, how: Sampling, generator):
    """nanoGPT's draw: softmax of the scaled (top-k) logits, torch.multinomial."""
    scaled = logits / how.temperature
    if how.top_k is not None:
        kth = torch.topk(scaled, how.top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return int(torch.multinomial(F.softmax(scaled, dim=-1), 1, generator=generator))


def their_sample(twin, prompt, tokens, how: Sampling, generator, draw=multinomial_draw):
    """torch.nn's cached sampling loop: the prompt once, then a token at a time."""
    ids, context = list(prompt), twin.shape.context
    with torch.inference_mode():
        twin.eval()
        twin.start_cache(1)
        logits = twin(torch.tensor([ids[-context:]]))[0, -1]
        kept = min(len(ids), context)
        for step in range(tokens):
            ids.append(draw(logits, how, generator))
            if step == tokens - 1:
                break
            if kept == context:  # full: start again from the last half, as ours does
                twin.start_cache(1)
                window = ids[-context // 2:]
                kept = len(window)
                logits = twin(torch.tensor([window]))[0, -1]
            else:
                kept += 1
                logits = twin(torch.tensor([ids[-1:]]))[0, -1]
    return ids[len(prompt):]


def bench_generate(registry, vocab_obj, train_ids, quick):
    vocab = len(vocab_obj)
    prompt, tokens, how = vocab_obj.encode("The "), 256, Sampling(temperature=1.0, top_k=None)
    repeats = 3 if quick else 9
    print(f"\n## generate: {tokens} tokens after {len(prompt)} prompt tokens, batch 1, float32, tokens per second\n")
    print("| model | ours, key/value cache | torch.nn, its cached loop | torch.nn's loop, our draw "
          "| ours, no cache | ours vs torch.nn | ours vs torch.nn (our draw) | ours vs no cache |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in (SMALL, LONG):
        pair = Pair(registry, vocab, torch.float32, shape=shape)

        def ours_cached():
            sample(pair.ours, prompt, tokens, context=shape.context, sampling=how,
                   generator=torch.Generator().manual_seed(0))

        def ours_plain():
            sample(pair.ours, prompt, tokens, context=shape.context, sampling=how,
                   generator=torch.Generator().manual_seed(0), cache=False)

        def theirs_cached():
            their_sample(pair.theirs, prompt, tokens, how, torch.Generator().manual_seed(0))

        def theirs_our_draw():
            their_sample(pair.theirs, prompt, tokens, how, torch.Generator().manual_seed(0),
                         draw=lambda logits, how, g: how.draw(logits, g))

        a, b, c, d = alternating_medians((ours_cached, theirs_cached, theirs_our_draw, ours_plain), repeats)
        print(f"| context {shape.context}, width {shape.width}, {shape.blocks} blocks, {shape.heads} heads "
              f"| {tokens / a:.0f} | {tokens / b:.0f} | {tokens / c:.0f} | {tokens / d:.0f} "
              f"| {b / a:.2f}x | {c / a:.2f}x | {d / a:.2f}x |", flush=True)


def held_out_bits(forward, held_ids):
    """Mean bits per character over the held-out ids, in windows of the context (float64 sum)."""
    n = (len(held_ids) - 1) // CONTEXT
    x = held_ids[: n * CONTEXT].view(n, CONTEXT)
    y = held_ids[1: n * CONTEXT + 1].view(n, CONTEXT)
    total = 0.0
    for start in range(0, n, 256):
        logits = forward(x[start:start + 256].double())  # (rows, context, vocab)
        total += F.cross_entropy(logits.double().flatten(0, 1), y[start:start + 256].flatten(),
                                 reduction="sum").item()
    return total / (n * CONTEXT) / math.log(2)


def bench_quality(registry, vocab, train_ids, held_ids, quick):
    steps = 100 if quick else 1500
    pair = Pair(registry, vocab, torch.float32)
    start = time.perf_counter()
    for x, y in batches(train_ids, steps, 32, seed=3):
        pair.our_step(x, y)
        pair.their_step(x, y)
    spent = time.perf_counter() - start
    with torch.set_grad_enabled(False):
        pair.ours.train(False)
        ours = held_out_bits(lambda x: pair.ours.forward(x.float()), held_ids)
    with torch.inference_mode():
        pair.theirs.eval()
        theirs = held_out_bits(lambda x: pair.theirs(x.long()), held_ids)
    print(f"\n## quality: {steps} AdamW steps at batch 32 on the same batches, float32 ({spent:.0f} s both)\n")
    print(f"held-out bits per character: ours {ours:.5f}, torch.nn {theirs:.5f}, "
          f"difference {abs(ours - theirs):.2g} (target <= 0.02)", flush=True)


SECTIONS = ("equal", "step", "generate", "quality")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = default_registry()
    text = pydoc_text()
    vocab = Vocabulary.of(text)
    ids = torch.tensor(vocab.encode(text))
    cut = int(len(ids) * 0.9)
    train_ids, held_ids = ids[:cut], ids[cut:]
    print(f"# bench/sequences.py: pydoc corpus, {len(text):,} characters, vocabulary {len(vocab)}; "
          f"torch {torch.__version__}, 1 thread")
    for name in args.only.split(","):
        if name == "equal":
            bench_equal(registry, len(vocab), train_ids, args.quick)
        elif name == "step":
            bench_step(registry, len(vocab), train_ids, args.quick)
        elif name == "generate":
            bench_generate(registry, vocab, train_ids, args.quick)
        elif name == "quality":
            bench_quality(registry, len(vocab), train_ids, held_ids, args.quick)
        else:
            parser.error(f"unknown section {name!r}; sections: {', '.join(SECTIONS)}")


if __name__ == "__main__":
    main()
