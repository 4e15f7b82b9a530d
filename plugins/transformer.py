"""Composite layers: a transformer block and a whole GPT, written as stacks of registered layers.

A composite layer's factory returns a stack text (core/network/stack.py's syntax) instead
of a module; the assembler builds that text in its place, with the shape it gets. So
`2*transformer_block:heads=4` is the same network as the two blocks written out, and a
plugin can add its own presets the same way.
"""

from __future__ import annotations

from core import composite, hookimpl


@composite
def transformer_block(
    in_shape: tuple[int, ...], heads: int = 4, hidden: int | None = None, dropout: float = 0.0,
) -> str:
    """A GPT-2 block (pre-norm): x + attention(layernorm(x)), then x + mlp(layernorm(x)).

    The MLP is width -> hidden (4 x width unless given) -> gelu -> width; `dropout` is
    applied to the attention weights and after each branch.
    """
    if len(in_shape) != 2:
        raise ValueError(f"transformer_block needs (time, width) inputs, after an embedding; got {tuple(in_shape)}")
    width = in_shape[-1]
    hidden = 4 * width if hidden is None else hidden
    drop = f",dropout:p={dropout}" if dropout else ""
    return (f"residual(layernorm,attention:heads={heads}:dropout={dropout}{drop}),"
            f"residual(layernorm,linear:out={hidden},gelu,linear:out={width}{drop})")


@composite
def gpt(
    in_shape: tuple[int, ...], vocab: int | None = None, width: int = 64, blocks: int = 2,
    heads: int = 4, hidden: int | None = None, dropout: float = 0.0,
) -> str:
    """A character-level GPT: embedding + positions, `blocks` transformer blocks, layernorm, logits.

    Takes (time,) token ids and gives (time, vocab) logits of the next token at every
    position. `vocab` comes from the data (the text dataset's vocabulary) unless given.
    """
    if vocab is None:
        raise ValueError("gpt needs vocab, the number of distinct tokens; the text datasets fill "
                         "it in, else write gpt:vocab=N")
    if len(in_shape) != 1:
        raise ValueError(f"gpt takes rows of token ids, (time,); got {tuple(in_shape)}")
    block = f"transformer_block:heads={heads}:dropout={dropout}" + (f":hidden={hidden}" if hidden else "")
    return (f"embedding:vocab={vocab}:width={width},position,{blocks}*{block},"
            f"layernorm,linear:out={vocab}")


@hookimpl
def register_layers(register):
    register("transformer_block", transformer_block)
    register("gpt", gpt)
