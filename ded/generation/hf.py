"""In-process transformers backend: batched ``model.generate``, the CPU default.

Requests are sorted by prompt length before batching (less left padding), and each batch is
seeded from its first request so a fresh run reproduces the same samples.
"""

from __future__ import annotations

from typing import Iterator

import torch

from ded.generation import Backend, Completion, Request
from ded.generation.text import normalize_think


class HFBackend(Backend):
    def __init__(self, loader, identity: dict, batch_size: int, check=None):
        """``loader()`` returns (model, tokenizer); it is called only if something is missing.
        ``check()`` (optional) raises ModelNotAvailable when the model cannot be loaded here."""
        self._loader = loader
        self._check = check
        self._model = None
        self._tok = None
        self.identity = {"backend": "hf", **identity}
        self.batch_size = batch_size
        # Requests are sorted by prompt length within a chunk: a large chunk pads less.
        self.chunk_size = max(batch_size * 32, 1024)

    def check(self) -> None:
        if self._check is not None:
            self._check()

    def _load(self):
        if self._model is None:
            self._model, self._tok = self._loader()
            self._tok.padding_side = "left"
        return self._model, self._tok

    @torch.inference_mode()
    def generate(self, requests: list[Request], sampling: dict) -> Iterator[list[Completion]]:
        model, tok = self._load()
        prompts = [tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in requests]
        lengths = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts]
        order = sorted(range(len(requests)), key=lambda i: lengths[i])
        s = sampling
        do_sample = s.get("temperature", 0.0) > 0
        eos = tok.eos_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            torch.manual_seed(requests[idx[0]].seed)
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            kwargs = dict(max_new_tokens=s["max_new_tokens"], do_sample=do_sample, pad_token_id=tok.pad_token_id, eos_token_id=eos)
            if do_sample:
                kwargs.update(temperature=s["temperature"], top_p=s.get("top_p", 1.0), top_k=0)
            out = model.generate(**enc, **kwargs)
            new = out[:, enc.input_ids.shape[1] :]
            batch = []
            for row, i in zip(new, idx):
                hits = (row == eos).nonzero()
                n_tok = int(hits[0]) + 1 if len(hits) else len(row)
                text = normalize_think(tok.decode(row[:n_tok], skip_special_tokens=True))
                batch.append(Completion(requests[i], text, n_tok, "stop" if len(hits) else "length"))
            yield batch

    def close(self) -> None:
        self._model = None
        self._tok = None
