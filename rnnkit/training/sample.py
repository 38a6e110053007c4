"""The work behind ``sample.py``: load a language model's checkpoint and generate text from a prompt."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from rnnkit.data.base import DataSpec
from rnnkit.data.tokens import BOS, EOS, PAD, UNKNOWN, Vocab
from rnnkit.training.checkpoint import atomic_write_text
from rnnkit.training.run import import_user_modules, load_run_config

log = logging.getLogger(__name__)


def load_language_model(cfg: DictConfig) -> tuple[torch.nn.Module, Vocab]:
    """The task of ``cfg.ckpt_path`` rebuilt from its run's config and the :class:`DataSpec` the
    checkpoint carries (no data is read), in eval mode on the CPU, and its vocabulary."""
    ckpt_path, run_cfg = load_run_config(cfg)
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    spec_dict = checkpoint.get("rnnkit_spec")
    if spec_dict is None:
        raise ValueError(
            f"ckpt_path: {ckpt_path} carries no 'rnnkit_spec' (vocabulary); was it written by rnnkit?"
        )
    spec = DataSpec(**spec_dict)
    if not spec.classification or not spec.vocab or spec.seq2seq:
        raise ValueError(
            f"ckpt_path: {ckpt_path} is not a language model (task=language over symbols): its data "
            f"spec has classification={spec.classification}, vocab of {len(spec.vocab or [])}"
        )
    vocab = Vocab(spec.vocab, separator=spec.separator, unknown=UNKNOWN in spec.vocab)
    if vocab.itos != list(spec.vocab):
        raise ValueError(f"ckpt_path: {ckpt_path}: the checkpoint's vocabulary is not in rnnkit's order")
    import_user_modules(run_cfg)
    model = instantiate(run_cfg.model, spec=spec)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), vocab


def sample(cfg: DictConfig) -> str:
    """Generate ``cfg.length`` symbols after ``cfg.prompt``; print the text, write ``sample.txt`` in
    the output directory and return it."""
    model, vocab = load_language_model(cfg)
    prompt = str(cfg.prompt)
    unknown = sorted({t for t in vocab.split(prompt) if t not in vocab.stoi})
    if unknown and vocab.unknown is None:
        raise ValueError(f"prompt: {unknown} are not in the model's vocabulary")
    if unknown:
        log.warning("prompt: %s are not in the model's vocabulary: read as <unk>", unknown)
    ids = vocab.encode(prompt)
    if not ids:
        kind = "characters" if vocab.separator == "" else "words"
        raise ValueError(f"prompt: {prompt!r} holds no token (the model reads {kind})")
    exclude = [PAD, BOS, EOS] + ([vocab.unknown] if vocab.unknown is not None else [])
    generator = torch.Generator().manual_seed(int(cfg.seed))
    drawn = model.generate(
        ids,
        int(cfg.length),
        temperature=float(cfg.temperature),
        top_k=int(cfg.top_k),
        generator=generator,
        exclude=exclude,
        progress=bool(cfg.get("progress", True)),
    )
    text = prompt + vocab.separator + vocab.decode(drawn)
    print(text)
    out = Path(cfg.paths.output_dir) / "sample.txt"
    atomic_write_text(out, text + "\n")
    log.info("sample written to %s", out)
    return text
