"""Reference-latent control (DragDiffusion §3.4, MasaCtrl-style mutual self-attention).

While the source latent and the dragged latent are denoised together as one batch
`[source..., edited...]`, the self-attention (`attn1`) layers of the decoder's later blocks let
*both* halves attend to the keys and values of the *source* half. The edited branch thus keeps
the source image's appearance while its own queries keep the dragged layout.

Layers are chosen by execution order (down blocks, mid block, up blocks) from a start block on —
never by the order of `unet.attn_processors`, which lists the mid block last.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn


def _block_rank(name: str) -> tuple[int, int]:
    """Execution rank of the top-level block a module name starts with: down < mid < up."""
    m = re.match(r"(down_blocks|up_blocks)\.(\d+)", name)
    if m:
        return (0 if m.group(1) == "down_blocks" else 2, int(m.group(2)))
    if name.startswith("mid_block"):
        return (1, 0)
    raise ValueError(f"{name!r} is not inside down_blocks, mid_block or up_blocks")


def self_attention_layers(unet: nn.Module, start_block: str = "up_blocks.2") -> list[str]:
    """Names of the self-attention (`attn1`) modules of `unet` in `start_block` and every block
    executed after it, in execution order (e.g. SD 1.5 with "up_blocks.2": the 6 layers of
    up_blocks.2 and up_blocks.3, DragDiffusion's `start_layer=10`)."""
    start = _block_rank(start_block)
    found = []
    for name, module in unet.named_modules():
        if not name.endswith("attn1") or not hasattr(module, "set_processor"):
            continue
        try:
            rank = _block_rank(name)
        except ValueError:
            continue
        if rank >= start:
            found.append((rank, name))
    # named_modules() is registration order (mid block last); sort by execution rank, keeping
    # the order inside a block.
    found.sort(key=lambda rn: rn[0])
    return [name for _, name in found]


class SourceKVAttnProcessor:
    """Self-attention processor whose keys/values come from the source half of the batch.

    The batch must be `[source (k), edited (k)]`; queries come from every element, keys and values
    from the source element of the same pair. With an odd batch, or for cross-attention, it
    computes plain attention. LoRA-wrapped projections (peft) are used as they are.
    """

    def __init__(self) -> None:
        #: Number of calls that shared K/V — for tests and logs.
        self.calls = 0

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        temb: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        shared = encoder_hidden_states is None and batch % 2 == 0
        if encoder_hidden_states is None:
            context = hidden_states
        else:
            context = (attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross
                       else encoder_hidden_states)
        if shared:
            # Keys/values from the source half only, repeated for the edited half.
            half = batch // 2
            context = context[:half].repeat(2, *([1] * (context.ndim - 1)))
            self.calls += 1
        key = attn.to_k(context)
        value = attn.to_v(context)

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)
        # Like diffusers' AttnProcessor2_0: SDPA's default 1/sqrt(head_dim) scale.
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                             is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


@contextlib.contextmanager
def reference_attention(unet: nn.Module, start_block: str = "up_blocks.2") -> Iterator[SourceKVAttnProcessor]:
    """Within the block, the `attn1` layers from `start_block` on share the source half's K/V.

    Yields the processor (its `calls` counts shared-K/V attention calls). The previous processors
    are restored on exit, also after an exception. Raises ValueError when no layer qualifies.
    """
    names = self_attention_layers(unet, start_block)
    if not names:
        raise ValueError(f"no self-attention layers in {start_block!r} or after it")
    proc = SourceKVAttnProcessor()
    saved: list[tuple[Any, Any]] = []
    try:
        for name in names:
            module = unet.get_submodule(name)
            saved.append((module, module.get_processor()))
            module.set_processor(proc)
        yield proc
    finally:
        for module, old in saved:
            module.set_processor(old)
