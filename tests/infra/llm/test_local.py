"""Local runners load a tiny model the test writes to disk and stream through the interface.

The model is a two-layer Llama with random weights and a 25-word vocabulary whose tokenizer
is built with ``tokenizers``: the same directory loads in ``transformers`` and in ``mlx-lm``
(their Llama weight names agree), so with greedy decoding both must say the same thing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path

import pytest

from domain.agents import AgentDefinition
from domain.errors import Unavailable
from infra.llm import ChatMessage, Completion, ModelRequest, local, provider_for

WORDS = "hello world the a salon agent room says hi yes no maybe tea garden plant water sun"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("torch", reason="the transformers runner needs torch==2.13.0 (CPU)")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-llama")
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for word in WORDS.split() + ["User:", "Assistant:"]:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>", pad_token="<pad>").save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    LlamaForCausalLM(config).save_pretrained(path)
    return str(path)


def ask(model: str, max_tokens: int = 10) -> ModelRequest:
    return ModelRequest(model=model, system="hello", max_tokens=max_tokens, temperature=0.0,
                        messages=[ChatMessage(role="user", name="bea", content="hello world")])


async def generate(runner: str, model: str) -> tuple[list[str], Completion]:
    provider = provider_for(AgentDefinition(name="tiny", provider=runner, model=model))
    deltas: list[str] = []
    completion: Completion | None = None
    async for item in provider.stream(ask(model)):
        if isinstance(item, Completion):
            completion = item
        else:
            deltas.append(item.text)
    assert completion is not None
    return deltas, completion


def vocabulary_words(text: str) -> set[str]:
    return set(text.split())


async def test_the_transformers_runner_streams_tokens_of_a_tiny_model(tiny_model: str) -> None:
    deltas, completion = await generate("transformers", tiny_model)
    assert len(deltas) > 1 and "".join(deltas) == completion.text
    assert vocabulary_words(completion.text) <= set(WORDS.split() + ["User:", "Assistant:"])
    assert completion.usage.output_tokens == 10 and completion.usage.input_tokens > 0
    assert (completion.provider, completion.model, completion.cost_usd) == \
        ("transformers", tiny_model, 0.0)


@pytest.mark.skipif(importlib.util.find_spec("mlx_lm") is None,
                    reason='mlx-lm is not installed: pip install "mlx[cpu]" mlx-lm')
async def test_the_mlx_runner_streams_the_same_greedy_tokens(tiny_model: str) -> None:
    deltas, completion = await generate("mlx", tiny_model)
    assert len(deltas) > 1 and "".join(deltas) == completion.text
    assert completion.usage.output_tokens == 10 and completion.provider == "mlx"
    _, reference = await generate("transformers", tiny_model)
    # Same weights, greedy: the same words (transformers hides special tokens like <unk>).
    words = [w for w in completion.text.split() if w not in ("<unk>", "<s>", "</s>", "<pad>")]
    assert words[:5] == reference.text.split()[:5]


async def test_cancelling_a_local_generation_stops_it(tiny_model: str) -> None:
    provider = provider_for(AgentDefinition(name="tiny", provider="transformers",
                                            model=tiny_model))
    first = asyncio.Event()
    seen: list[str] = []

    async def consume() -> None:
        async for item in provider.stream(ask(tiny_model, max_tokens=200)):
            if not isinstance(item, Completion):
                seen.append(item.text)
                first.set()

    task = asyncio.get_running_loop().create_task(consume())
    await asyncio.wait_for(first.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(seen) < 200
    # The cancelled call waited for its generation thread: none is left running.
    assert not [t for t in threading.enumerate() if t.name == "salon-transformers"]


def test_the_stop_flag_ends_a_generation_at_the_next_token(tiny_model: str) -> None:
    loaded = local.runner("transformers", tiny_model)
    stopped, counts = threading.Event(), local.Counts()
    pieces = loaded.generate(loaded.render("", [ChatMessage(role="user", content="hello")]),
                             200, 0.0, stopped, counts)
    first = next(pieces)
    assert first
    stopped.set()
    after = list(pieces)  # what the model had made before it saw the flag
    assert len(after) <= 2, after
    assert counts.output < 200, "the model stopped long before max_tokens"
    assert not [t for t in threading.enumerate() if t.name == "salon-transformers"]


async def test_the_vllm_runner_says_how_to_get_vllm(tiny_model: str) -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here; this checks the message for when it is not")
    with pytest.raises(Unavailable, match="pip install vllm"):
        await generate("vllm-local", tiny_model)


async def test_a_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="download the model beforehand"):
        await generate("transformers", str(tmp_path / "nothing-here"))
