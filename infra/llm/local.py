"""Models run in this process by a local runner, behind the same provider interface.

Runners are registered by name (``RUNNERS``): ``mlx`` (``mlx-lm``; on Linux
``pip install "mlx[cpu]" mlx-lm`` gives a CPU build), ``transformers`` (Hugging Face
``transformers`` on torch) and ``vllm-local`` (vLLM's offline engine, where vLLM is installed).
An agent names the runner as its ``provider`` and the model's directory as its ``model``;
nothing is downloaded (``local_files_only``), so fetch weights beforehand. A model loads once
per process and is shared by every agent using it. Generation runs in a worker thread and
streams its text through the event loop; cancelling the call stops it at the next token.
Local models get tools through the prompt (``prompted.py``): their native formats differ.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from infra.llm.base import ChatMessage, Completion, Delta, ModelRequest, Usage
from infra.llm.failures import ProviderError, failure
from infra.llm.messages import said, system_prompt


@dataclass
class Counts:
    """Tokens of a generation, filled in as it runs."""

    prompt: int = 0
    output: int = 0
    finish: str | None = None


class Runner(Protocol):
    """A loaded local model: renders a prompt and generates text from it."""

    def render(self, system: str, messages: list[ChatMessage]) -> str:
        """The prompt text for a conversation (the model's chat template when it has one)."""
        ...

    def generate(self, prompt: str, max_tokens: int, temperature: float,
                 stopped: threading.Event, counts: Counts) -> Iterator[str]:
        """Text pieces as they are generated; stops early when ``stopped`` is set."""
        ...


def plain_prompt(system: str, messages: list[ChatMessage]) -> str:
    """A prompt for models without a chat template: labelled turns, then ``Assistant:``."""
    lines = [system, ""] if system else []
    for m in messages:
        speaker = "Assistant" if m.role == "assistant" else "User"
        lines.append(f"{speaker}: {said(m)}")
    lines.append("Assistant:")
    return "\n".join(lines)


def chat_messages(system: str, messages: list[ChatMessage]) -> list[dict[str, str]]:
    """The conversation as chat-template messages."""
    turns = [{"role": "system", "content": system}] if system else []
    turns += [{"role": "assistant" if m.role == "assistant" else "user", "content": said(m)}
              for m in messages]
    return turns


def _render(tokenizer: Any, system: str, messages: list[ChatMessage]) -> str:
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(chat_messages(system, messages), tokenize=False,
                                                 add_generation_prompt=True)
        return str(rendered)
    return plain_prompt(system, messages)


class MlxRunner:
    """A model loaded with ``mlx_lm.load`` and generated with ``mlx_lm.stream_generate``."""

    def __init__(self, path: str) -> None:
        try:
            from mlx_lm import load
        except ImportError as error:
            raise _missing("mlx", 'pip install "mlx[cpu]" mlx-lm (or mlx-lm on Apple silicon)',
                           error) from None
        loaded: tuple[Any, ...] = load(path)
        self.model, self.tokenizer = loaded[0], loaded[1]

    def render(self, system: str, messages: list[ChatMessage]) -> str:
        return _render(self.tokenizer, system, messages)

    def generate(self, prompt: str, max_tokens: int, temperature: float,
                 stopped: threading.Event, counts: Counts) -> Iterator[str]:
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        for step in stream_generate(self.model, self.tokenizer, prompt, max_tokens=max_tokens,
                                    sampler=make_sampler(temp=temperature)):
            counts.prompt, counts.output = step.prompt_tokens, step.generation_tokens
            counts.finish = step.finish_reason or counts.finish
            if step.text:
                yield step.text
            if stopped.is_set():
                return


class TransformersRunner:
    """A causal LM loaded with ``transformers`` from a local directory, run on the CPU."""

    def __init__(self, path: str) -> None:
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as error:
            raise _missing("transformers", "pip install torch transformers", error) from None
        self.tokenizer: Any = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        self.model: Any = model.eval()

    def render(self, system: str, messages: list[ChatMessage]) -> str:
        return _render(self.tokenizer, system, messages)

    def generate(self, prompt: str, max_tokens: int, temperature: float,
                 stopped: threading.Event, counts: Counts) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stopped.is_set()

        inputs = self.tokenizer(prompt, return_tensors="pt")
        counts.prompt = int(inputs["input_ids"].shape[-1])
        streamer: Any = TextIteratorStreamer(self.tokenizer, skip_prompt=True,
                                        skip_special_tokens=True)
        options: dict[str, Any] = {
            **inputs, "max_new_tokens": max_tokens, "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([Stop()]),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0,
            "do_sample": temperature > 0}
        if temperature > 0:
            options["temperature"] = temperature
        errors: list[BaseException] = []

        def run() -> None:
            try:
                output = self.model.generate(**options)
                counts.output = int(output.shape[-1]) - counts.prompt
            except BaseException as error:  # noqa: BLE001 - handed to the reading thread
                errors.append(error)
                streamer.end()

        worker = threading.Thread(target=run, name="salon-transformers", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            stopped.set()
            worker.join()
        if errors:
            raise errors[0]
        counts.finish = "length" if counts.output >= max_tokens else "stop"


class VllmRunner:
    """vLLM's offline engine in this process (needs vLLM installed, usually with a GPU)."""

    def __init__(self, path: str) -> None:
        try:
            import vllm  # type: ignore[import-not-found]
        except ImportError as error:
            raise _missing("vllm", "pip install vllm on a machine it supports, or run "
                           "`vllm serve MODEL` and use provider 'vllm' with its base_url",
                           error) from None
        self.engine = vllm.LLM(model=path)
        self.sampling = vllm.SamplingParams
        self.tokenizer = self.engine.get_tokenizer()

    def render(self, system: str, messages: list[ChatMessage]) -> str:
        return _render(self.tokenizer, system, messages)

    def generate(self, prompt: str, max_tokens: int, temperature: float,
                 stopped: threading.Event, counts: Counts) -> Iterator[str]:
        outputs = self.engine.generate([prompt], self.sampling(max_tokens=max_tokens,
                                                               temperature=temperature))
        result = outputs[0]
        counts.prompt = len(result.prompt_token_ids or [])
        counts.output = len(result.outputs[0].token_ids)
        counts.finish = result.outputs[0].finish_reason
        yield str(result.outputs[0].text)


RUNNERS: dict[str, Callable[[str], Runner]] = {
    "mlx": MlxRunner,
    "transformers": TransformersRunner,
    "vllm-local": VllmRunner,
}
_loaded: dict[tuple[str, str], Runner] = {}
_loading = threading.Lock()


def register_runner(name: str, factory: Callable[[str], Runner]) -> None:
    """Make another local runner available as provider ``name``."""
    RUNNERS[name] = factory


def runner(name: str, model: str) -> Runner:
    """The runner ``name`` with ``model`` loaded (once per process)."""
    key = (name, model)
    with _loading:
        if key not in _loaded:
            if not Path(model).expanduser().exists():
                raise failure(f"{name}:{model}", "unavailable", f"no model at {model!r}: local "
                              "runners load from disk only; download the model beforehand "
                              "and give its directory as the agent's model")
            try:
                _loaded[key] = RUNNERS[name](str(Path(model).expanduser()))
            except ProviderError:
                raise
            except Exception as error:  # noqa: BLE001 - a broken model directory
                raise failure(f"{name}:{model}", "unavailable", f"the model could not be "
                              f"loaded ({type(error).__name__}: {error})") from None
        return _loaded[key]


def _missing(runner_name: str, how: str, error: ImportError) -> ProviderError:
    return failure(runner_name, "unavailable", f"the {runner_name} runner is not installed "
                   f"({error.name or error}); {how}")


class LocalProvider:
    """A local runner's model behind Salon's provider interface."""

    def __init__(self, runner_name: str, model: str) -> None:
        if runner_name not in RUNNERS:
            raise failure(runner_name, "unavailable", f"no local runner {runner_name!r}; one of "
                          f"{', '.join(RUNNERS)}")
        self.name = runner_name
        self.model = model

    async def complete(self, request: ModelRequest) -> Completion:
        """The whole reply at once."""
        completion: Completion | None = None
        async for item in self.stream(request):
            if isinstance(item, Completion):
                completion = item
        assert completion is not None
        return completion

    async def stream(self, request: ModelRequest) -> AsyncIterator[Delta | Completion]:
        """Text as the model generates it (from a worker thread), then the whole reply."""
        loaded = await asyncio.to_thread(runner, self.name, self.model)
        prompt = loaded.render(system_prompt(request), request.messages)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        stopped = threading.Event()
        counts = Counts()

        def produce() -> None:
            try:
                for piece in loaded.generate(prompt, request.max_tokens, request.temperature,
                                             stopped, counts):
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
                    if stopped.is_set():
                        break
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as error:  # noqa: BLE001 - handed to the event loop
                loop.call_soon_threadsafe(queue.put_nowait, error)

        worker = loop.run_in_executor(None, produce)
        parts: list[str] = []
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise failure(f"{self.name}:{self.model}", "server", "generation failed "
                                  f"({type(item).__name__}: {item})")
                parts.append(item)
                yield Delta(text=item)
        finally:
            stopped.set()
            if not worker.done():
                # Let the thread see the flag; never leave it writing into a dead loop.
                await asyncio.shield(worker)
        yield Completion(text="".join(parts), provider=self.name, model=self.model,
                         usage=Usage(input_tokens=counts.prompt, output_tokens=counts.output),
                         finish_reason=counts.finish)
