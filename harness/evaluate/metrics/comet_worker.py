"""Scores items with COMET inside the COMET environment (`icl-bench comet setup`); standalone, since that
environment has no icl_bench.  stdin: {"model", "cache", "batch_size", "items": [{src, mt, ref}]};
stdout: {"scores": [...]}, one per item, in order; logs go to stderr.

`model` is a hub id (downloaded once into `cache`), a local checkpoint, or `tiny-random`: a randomly
initialised regression model over a 2-layer XLM-R encoder whose config and tokenizer are written
locally, so the whole path runs without the hub (its scores mean nothing).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TINY = "tiny-random"


def tiny_encoder(folder: Path) -> Path:
    """A 2-layer, 32-wide XLM-R config and a word-level tokenizer with XLM-R's special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import XLMRobertaConfig, XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocabulary = {token: i for i, token in enumerate(specials + letters)}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    fast = XLMRobertaTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )
    fast.save_pretrained(folder)
    config = XLMRobertaConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    config.save_pretrained(folder)
    return folder


def load(name: str, cache: Path):
    import torch
    from comet import download_model, load_from_checkpoint
    from comet.models import RegressionMetric

    if name == TINY:
        torch.manual_seed(0)
        encoder = tiny_encoder(cache / TINY)
        return RegressionMetric(
            pretrained_model=str(encoder), load_pretrained_weights=False, hidden_sizes=[32], layer="mix"
        ).eval()
    path = Path(name) if Path(name).exists() else Path(download_model(name, saving_directory=cache / name))
    return load_from_checkpoint(str(path))


def main() -> None:
    import torch

    request = json.load(sys.stdin)
    model = load(request["model"], Path(request["cache"]))
    scored = model.predict(
        request["items"],
        batch_size=request["batch_size"],
        gpus=1 if torch.cuda.is_available() else 0,
        progress_bar=False,
    )
    json.dump({"scores": [float(s) for s in scored.scores]}, sys.stdout)


if __name__ == "__main__":
    main()
