"""Transformers engine (CPU or GPU): generation, next-token probabilities, hidden states.

Decoding is a hand-written loop over the model's forward pass rather than
``model.generate``: it prefills a prompt once and shares that KV cache among the
``n`` samples, drops finished rows from the batch, records the temperature-1
logprob of every chosen token on the way, and draws every sample from its own
random stream, so a sample depends on (seed, prompt, sample index) only and not
on which other prompts share its batch. The engine keeps the keys and values of the
conversations it answered one reply at a time (:class:`PrefixStore`): a later prompt
that starts with one, as a cell's follow-up passes, samples and hidden states do,
prefills only its own tokens.
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AttentionInterface, AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from ..models import ModelSpec
from .base import Completion, Conversation, Interrupted, Sampling
from .options import engine_dtype
from .rendering import (
    build_completion,
    candidate_token_sets,
    encode_prompt,
    eos_token_ids,
    has_stop,
    render_prompt,
    sample_seed,
)

log = logging.getLogger(__name__)

# Memory for stored conversations (:class:`PrefixStore`): an embedded cell's 16 questions with their greedy and
# verbal replies take ~330 MB for SmolLM2-135M in float32.
DEFAULT_PREFIX_CACHE_MB = 512

# The attention the engine loads its models with on a CPU: transformers' SDPA, but a decoding step's query reads
# the grouped key/value heads in place.
CPU_ATTENTION = "uqroute_sdpa_gqa"


def _sdpa_grouped_decoding(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                           **kwargs):
    """transformers' SDPA attention, except in a masked decoding step of a model with grouped key/value heads.

    There transformers copies every key and value head once per query head that shares it (it leaves grouping
    to torch only without a mask, and a left-padded batch has one), which copies the whole KV cache at every
    layer of every step: for SmolLM2-135M, 5 samples of 16 prompts, most of a sampling pass's time. torch's CPU
    kernel takes the mask and the grouped heads at once (``enable_gqa``) and gives the same bits (tested on
    both models in float32 and bfloat16). Prefill (a query of several tokens) keeps transformers' path.
    """
    groups = getattr(module, "num_key_value_groups", 1)
    if groups == 1 or attention_mask is None or query.shape[2] != 1 or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(CPU_ATTENTION, _sdpa_grouped_decoding)
ALL_MASK_ATTENTION_FUNCTIONS.register(CPU_ATTENTION, sdpa_mask)


def _nbytes(keys: list[torch.Tensor], values: list[torch.Tensor]) -> int:
    """Memory an entry's key and value tensors take."""
    return sum(t.numel() * t.element_size() for t in (*keys, *values))


class PrefixStore:
    """Keys and values of token sequences the engine has already run, for later prompts that start with them.

    A cell runs the greedy pass first; its follow-ups (p(True), verbal 2-stage), its samples and its hidden
    states then prompt with that answered conversation or its question again. Keys and values at a position
    depend only on the tokens up to it, so a prompt that starts with a stored sequence prefills only the
    tokens after the common part. Entries are token ids with one ``(heads, length, head_dim)`` key and value
    tensor per layer; the least recently used go first once the entries pass ``max_bytes``.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._entries: OrderedDict[tuple[int, ...], tuple[list[torch.Tensor], list[torch.Tensor]]] = OrderedDict()
        self.hits = self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = self.hits = self.reused_tokens = 0

    def add(self, ids: Sequence[int], keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        key = tuple(ids)
        size = _nbytes(keys, values)
        if size > self.max_bytes or key in self._entries:
            return
        self._entries[key] = (keys, values)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= _nbytes(*evicted)

    def longest(self, ids: Sequence[int]) -> tuple[tuple[list[torch.Tensor], list[torch.Tensor]] | None, int]:
        """The entry sharing the longest start with ``ids``, and that length; at most ``len(ids) - 1`` tokens,
        so that a prompt always has a last token to run (its logits are what the caller wants)."""
        best, best_len = None, 0
        wanted = np.asarray(ids, dtype=np.int64)
        for stored in self._entries:
            n = min(len(stored), len(wanted) - 1)
            if n <= best_len:
                continue
            differ = np.flatnonzero(np.asarray(stored[:n], dtype=np.int64) != wanted[:n])
            common = int(differ[0]) if len(differ) else n
            if common > best_len:
                best, best_len = stored, common
        if best is None:
            return None, 0
        self._entries.move_to_end(best)
        self.hits += 1
        self.reused_tokens += best_len
        return self._entries[best], best_len


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to cut padding.

    Callers put results back by index, so the output order matches the input.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


class HFEngine:
    """Engine on a transformers causal LM.

    Parameters
    ----------
    spec : registry entry (rendering: chat template or plain completion format, stop strings).
    model_path : HF folder (a materialized GGUF copy) or hub id.
    device : ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    dtype : ``float32 | bfloat16 | float16 | auto`` (auto: the fastest on ``device``, see
        :func:`uqroute.engines.options.resolve_dtype`); ``self.dtype`` is the one chosen.
    batch_size : prompts per batch; sampling decodes their ``n`` samples together
        (``batch_size * n`` rows sharing each prompt's prefill).
    threads : ``torch.set_num_threads`` (CPU); None leaves torch's default.
    progress : show a tqdm bar over batches.
    prefix_cache_mb : memory for the keys and values of the conversations it has answered one reply at a
        time (:class:`PrefixStore`), which later prompts starting with them reuse instead of prefilling
        them again; 0 turns the reuse off (every prompt prefilled whole, as by a fresh engine).
    """

    def __init__(
        self,
        spec: ModelSpec,
        model_path: str | os.PathLike,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        batch_size: int = 8,
        threads: int | None = None,
        progress: bool = True,
        prefix_cache_mb: float = DEFAULT_PREFIX_CACHE_MB,
    ) -> None:
        self.dtype = engine_dtype(spec.name, "hf", dtype, device)
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.spec = spec
        self.model_name = spec.name
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.progress = progress
        # Asked between decoding steps and batches: True stops the call (Interrupted). A server sets it while
        # the call's requests may still be cancelled; the workflow leaves it unset.
        self.interrupt: Callable[[], bool] | None = None
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        # On a GPU transformers' own SDPA path stays: torch's masked kernels there do not all take grouped heads.
        attention = {"attn_implementation": CPU_ATTENTION} if self.device.type == "cpu" else {}
        self.model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=getattr(torch, self.dtype),
                                                          **attention).to(self.device)
        self.model.eval()
        self.eos_ids = eos_token_ids(self.tokenizer, self.model.config, getattr(self.model, "generation_config", None))
        if not self.eos_ids:
            raise ValueError(f"model {spec.name}: tokenizer and config define no EOS token")
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else min(self.eos_ids)
        # The cache keyword was renamed in transformers 5; accept either spelling.
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.num_layers = int(self.model.config.get_text_config().num_hidden_layers)
        self.hidden_size = int(self.model.config.get_text_config().hidden_size)
        # Positions the model was trained on: a longer prompt still runs, slowly and to no use.
        self.context_window = int(self.model.config.get_text_config().max_position_embeddings)
        # Reuse needs caches whose layers hold every position: plain layers, or sliding-window ones while a
        # sequence stays inside the window (the smallest window bounds a reused prompt and its reply).
        layers = DynamicCache(config=self.model.config).layers
        plain = all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in layers)
        self._window = min((layer.sliding_window - 1 for layer in layers if layer.is_sliding), default=None)
        self.prefixes = PrefixStore(int(prefix_cache_mb * 2**20)) if prefix_cache_mb > 0 and plain else None

    # ------------------------------------------------------------------ helpers

    def render(self, conversation: Conversation) -> str:
        return render_prompt(self.tokenizer, conversation, self.spec)

    def encode(self, conversations: Sequence[Conversation]) -> tuple[list[str], list[list[int]]]:
        prompts = [self.render(c) for c in conversations]
        return prompts, [encode_prompt(self.tokenizer, p, self.spec) for p in prompts]

    def prompt_lengths(self, conversations: Sequence[Conversation]) -> list[int]:
        return [len(ids) for ids in self.encode(conversations)[1]]

    def _left_pad(self, batch: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask, position_ids)``, each ``(B, L)``, padded on the left.

        Position ids count real tokens only, so a padded prompt sees the same
        positions as it would alone in a batch of one.
        """
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            if not ids:
                raise ValueError(f"model {self.model_name}: empty prompt")
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return input_ids.to(self.device), mask.to(self.device), positions.to(self.device)

    def _prefill(self, batch: Sequence[Sequence[int]], keep_cache: bool = False, new_tokens: int = 0, **kwargs):
        """The forward pass over the prompts ``batch``: ``(output, cache, mask)``, the cache None unless
        ``keep_cache`` (decoding continues from it) or a prompt reused a stored prefix.

        Each prompt starts from the longest stored sequence it begins with (:class:`PrefixStore`), whose keys
        and values go into the cache left-padded to the longest reused part; the rest of each prompt follows,
        left-padded too, so a row reads ``[pad][its prefix][pad][the rest]`` and the mask and the position
        ids skip the padding. The output covers the rest only: position -1 is every row's last prompt token.
        ``new_tokens``: how many the caller decodes after it (a sliding-window layer must keep them all).
        """
        hits = [self.prefixes.longest(ids) if self.prefixes is not None else (None, 0) for ids in batch]
        width = max(n for _, n in hits)
        longest = max(len(ids) for ids in batch) + new_tokens
        if width == 0 or (self._window is not None and width + longest > self._window):
            input_ids, mask, positions = self._left_pad(batch)
            cache = DynamicCache(config=self.model.config) if keep_cache else None
            return self._forward(input_ids, mask, positions, cache, **kwargs), cache, mask
        cache = DynamicCache(config=self.model.config)
        entry = next(e for e, n in hits if n)
        for layer, (stored_keys, stored_values) in enumerate(zip(*entry)):
            heads, _, head_dim = stored_keys.shape
            keys = stored_keys.new_zeros((len(batch), heads, width, head_dim))
            values = stored_values.new_zeros((len(batch), heads, width, head_dim))
            for row, (hit, n) in enumerate(hits):
                if n:
                    keys[row, :, width - n :] = hit[0][layer][:, :n]
                    values[row, :, width - n :] = hit[1][layer][:, :n]
            cache.update(keys.to(self.device), values.to(self.device), layer)
        reused = torch.tensor([n for _, n in hits])
        prefix_mask = (torch.arange(width)[None, :] >= width - reused[:, None]).long()
        input_ids, rest_mask, positions = self._left_pad([ids[n:] for ids, (_, n) in zip(batch, hits)])
        mask = torch.cat([prefix_mask.to(self.device), rest_mask], dim=1)
        positions = positions + reused[:, None].to(self.device)
        return self._forward(input_ids, mask, positions, cache, **kwargs), cache, mask

    def _store(self, ids: Sequence[int], cache: DynamicCache, row: int, real: torch.Tensor) -> None:
        """Keep row ``row`` of ``cache`` (its positions where ``real``) as the keys and values of ``ids``."""
        if any(layer.keys.shape[-2] != len(real) for layer in cache.layers):
            return  # a sliding-window layer dropped positions: the row's sequence is not whole
        self.prefixes.add(ids, [layer.keys[row][:, real] for layer in cache.layers],
                          [layer.values[row][:, real] for layer in cache.layers])

    def _forward(self, input_ids, mask, positions, cache=None, **kwargs):
        extra = {self._cache_kw: cache, "use_cache": True} if cache is not None else {"use_cache": False}
        return self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, **extra, **kwargs)

    def _bar(self, batches: list, desc: str):
        # A pass already shows one bar over its batches; a single engine batch adds nothing to it.
        return tqdm(batches, desc=f"{self.model_name} {desc}", unit="batch",
                    disable=not self.progress or len(batches) <= 1, leave=False)

    # ------------------------------------------------------------------ Engine

    @torch.inference_mode()
    def generate(self, conversations: Sequence[Conversation], sampling: Sampling) -> list[list[Completion]]:
        """``sampling.n`` completions per conversation (see :meth:`uqroute.engines.base.Engine.generate`).

        ``token_logprobs`` come from ``log_softmax`` of the raw logits (the
        temperature-1 distribution, before top-p) at each chosen token.
        """
        if sampling.temperature <= 0 and sampling.n > 1:
            raise ValueError(f"model {self.model_name}: n={sampling.n} greedy completions would all be identical; "
                             "use temperature > 0")
        _, prompt_ids = self.encode(conversations)
        results: list[list[Completion]] = [[] for _ in conversations]
        for chunk in self._bar(length_sorted_batches([len(p) for p in prompt_ids], self.batch_size), "generate"):
            self._check_interrupt()
            batch = [prompt_ids[i] for i in chunk]
            for i, completions in zip(chunk, self._generate_batch(batch, sampling)):
                results[i] = completions
        return results

    def _generate_batch(self, batch: list[list[int]], sampling: Sampling) -> list[list[Completion]]:
        n, temperature = sampling.n, sampling.temperature
        output, cache, mask = self._prefill(batch, keep_cache=True, new_tokens=sampling.max_new_tokens,
                                            logits_to_keep=1)
        logits = output.logits[:, -1, :].float()
        # One reply per prompt (greedy, verbal): its conversation is what a follow-up prompt starts with.
        store = self.prefixes is not None and n == 1
        if n > 1:
            # One prefill per prompt, shared by its n samples.
            logits = logits.repeat_interleave(n, dim=0)
            mask = mask.repeat_interleave(n, dim=0)
            cache.batch_repeat_interleave(n)
        rows = len(batch) * n
        generators = None
        if temperature > 0:
            generators = [
                torch.Generator().manual_seed(sample_seed(sampling.seed, batch[r // n], r % n)) for r in range(rows)
            ]
        active = torch.arange(rows)
        next_pos = mask.sum(-1)
        out_ids: list[list[int]] = [[] for _ in range(rows)]
        out_lps: list[list[float]] = [[] for _ in range(rows)]
        stop = self.spec.stop
        stop_window = max((len(s) for s in stop), default=0) + 2
        eos = torch.tensor(sorted(self.eos_ids), device=logits.device)
        for step in range(sampling.max_new_tokens):
            self._check_interrupt()
            logprobs = torch.log_softmax(logits, dim=-1)
            if generators is None:
                chosen = logits.argmax(dim=-1)
            else:
                chosen = self._sample(logits, temperature, sampling.top_p, [generators[int(r)] for r in active])
            chosen_lp = logprobs.gather(1, chosen[:, None])[:, 0]
            finished = torch.isin(chosen, eos)
            for a, (r, tok, lp) in enumerate(zip(active.tolist(), chosen.tolist(), chosen_lp.tolist())):
                out_ids[r].append(tok)
                out_lps[r].append(lp)
                if stop and not finished[a] and has_stop(self.tokenizer, out_ids[r], stop, stop_window):
                    finished[a] = True
            last = step == sampling.max_new_tokens - 1
            if store:
                # A finished row's cache holds its prompt and every reply token but the one just chosen.
                for a in (range(len(active)) if last else finished.nonzero()[:, 0].tolist()):
                    r = int(active[a])
                    self._store(batch[r] + out_ids[r][:-1], cache, a, mask[a].bool())
            if last:
                break
            keep = (~finished).nonzero()[:, 0]
            if len(keep) == 0:
                break
            if len(keep) < len(active):
                cache.batch_select_indices(keep)
                active, mask, chosen, next_pos = active[keep.cpu()], mask[keep], chosen[keep], next_pos[keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            logits = self._forward(chosen[:, None], mask, next_pos[:, None], cache).logits[:, -1, :].float()
            next_pos = next_pos + 1
        completions = [
            build_completion(self.tokenizer, out_ids[r], out_lps[r], eos_ids=self.eos_ids, stop=stop)
            for r in range(rows)
        ]
        return [completions[b * n : (b + 1) * n] for b in range(len(batch))]

    def _check_interrupt(self) -> None:
        if self.interrupt is not None and self.interrupt():
            raise Interrupted(f"model {self.model_name}: call interrupted, no request waits for it")

    @staticmethod
    def _sample(
        logits: torch.Tensor, temperature: float, top_p: float, generators: list[torch.Generator]
    ) -> torch.Tensor:
        """One token per row by inverse-CDF sampling with each row's own uniform draw."""
        probs = torch.softmax(logits / temperature, dim=-1)
        order = None
        if top_p < 1.0:
            probs, order = probs.sort(dim=-1, descending=True)
            # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
            outside = probs.cumsum(-1) - probs > top_p
            probs = probs.masked_fill(outside, 0.0)
        cdf = probs.cumsum(-1)
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators]).to(cdf.device)
        picks = torch.searchsorted(cdf, (u * cdf[:, -1].double()).to(cdf.dtype)[:, None], right=True)[:, 0]
        picks = picks.clamp(max=cdf.shape[-1] - 1)
        return order.gather(1, picks[:, None])[:, 0] if order is not None else picks

    @torch.inference_mode()
    def next_token_probs(self, conversations: Sequence[Conversation], candidates: Sequence[str]) -> np.ndarray:
        """Shape ``(len(conversations), len(candidates))``: full-vocabulary softmax at the assistant's
        first position, summed over each candidate's tokens (:func:`~.rendering.candidate_token_sets`)."""
        _, prompt_ids = self.encode(conversations)
        token_sets = candidate_token_sets(self.tokenizer, candidates, self.model_name)
        out = np.zeros((len(conversations), len(candidates)), dtype=np.float64)
        for chunk in self._bar(length_sorted_batches([len(p) for p in prompt_ids], self.batch_size), "next-token"):
            self._check_interrupt()
            output, _, _ = self._prefill([prompt_ids[i] for i in chunk], logits_to_keep=1)
            logits = output.logits[:, -1, :].float()
            probs = torch.softmax(logits, dim=-1).double()
            out[chunk] = torch.stack([probs[:, ids].sum(-1) for ids in token_sets], dim=1).cpu().numpy()
        return out

    @torch.inference_mode()
    def hidden_states(self, conversations: Sequence[Conversation], layer: int) -> np.ndarray:
        """Residual-stream state at the conversation's last token, float32 ``(n, hidden_size)``.

        ``layer`` indexes transformers' ``hidden_states`` tuple, which has
        ``num_layers + 1`` entries: 0 is the embedding output and ``i`` the
        output of decoder layer ``i`` (1-based; the last entry with the final
        norm applied). So ``-8`` is the output of the eighth-to-last decoder
        layer (layer ``num_layers - 7``; 23 of 30 for SmolLM2-135M). Prefill
        only; padding is on the left, so the last position is every row's last
        real token.
        """
        if not -(self.num_layers + 1) <= layer <= self.num_layers:
            raise ValueError(
                f"model {self.model_name}: layer {layer} out of range for {self.num_layers} layers "
                f"(hidden_states has {self.num_layers + 1} entries)"
            )
        _, prompt_ids = self.encode(conversations)
        out = np.zeros((len(conversations), self.hidden_size), dtype=np.float32)
        for chunk in self._bar(length_sorted_batches([len(p) for p in prompt_ids], self.batch_size), "hidden"):
            self._check_interrupt()
            result, _, _ = self._prefill([prompt_ids[i] for i in chunk], output_hidden_states=True,
                                         logits_to_keep=1)
            out[chunk] = result.hidden_states[layer][:, -1, :].float().cpu().numpy()
        return out

    def close(self) -> None:
        if self.prefixes is not None and self.prefixes.hits:
            log.info("model %s: %d prompts started from a stored conversation, %d tokens not prefilled again",
                     self.model_name, self.prefixes.hits, self.prefixes.reused_tokens)
        self.prefixes = None
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
