import pytest
from omegaconf import OmegaConf

from ded.config import TrainConfig
from ded.train import checkpoint_key, make_trainer, render_example, to_dataset_rows

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
    if "position_ids" in batch and batch["input_ids"].shape[0] == 1:  # packed: split where positions restart
        ids, labels, pos = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
        starts = [i for i in range(len(pos)) if pos[i] == 0] + [len(pos)]
        return [(ids[a:b], labels[a:b]) for a, b in zip(starts, starts[1:])]
    mask = batch["attention_mask"].bool()
    return [(i[m], l[m]) for i, l, m in zip(batch["input_ids"], batch["labels"], mask)]


@pytest.mark.parametrize("packing", [False, True])
def test_loss_only_on_response_tokens_real_batch(tok_model, tmp_path, packing):
    """On a real collated batch, exactly the assistant response and its end-of-turn carry loss."""
    tok, model = tok_model
    cfg = OmegaConf.structured(TrainConfig(batch_size=3, packing=packing))
    trainer = make_trainer(model, tok, to_dataset_rows(tok, CORPUS, PREFIX), cfg, str(tmp_path))
    batch = next(iter(trainer.get_train_dataloader()))
    if packing:
        assert batch["input_ids"].shape[0] == 1 and "position_ids" in batch  # really packed
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
    trainer = make_trainer(model, tok, to_dataset_rows(tok, corpus, []), OmegaConf.structured(TrainConfig(batch_size=1)), str(tmp_path))
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
    trainer = make_trainer(fresh, tok, to_dataset_rows(tok, CORPUS, []), OmegaConf.structured(TrainConfig(batch_size=3, lora_r=4)), str(tmp_path))
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_checkpoint_key_tracks_corpus_and_config_not_logging():
    tc = OmegaConf.structured(TrainConfig())
    k = checkpoint_key({"model": "m"}, CORPUS, [], tc)
    assert k == checkpoint_key({"model": "m"}, CORPUS, [], OmegaConf.merge(tc, {"logging_steps": 99}))
    assert k != checkpoint_key({"model": "m"}, CORPUS[:2], [], tc)
    assert k != checkpoint_key({"model": "m"}, CORPUS, [], OmegaConf.merge(tc, {"learning_rate": 1e-4}))
    assert k != checkpoint_key({"model": "m"}, CORPUS, [], OmegaConf.merge(tc, {"seed": 1}))


def test_two_process_launch_trains_and_saves(smollm_path, tmp_path):
    """train.num_processes=2 launches two real processes (torchrun, DDP over gloo on CPU) and publishes a checkpoint."""
    from transformers import AutoModelForCausalLM

    from ded.cache import StageCache
    from ded.train import train

    cfg = OmegaConf.structured(TrainConfig(batch_size=1, epochs=1, num_processes=2, launcher="torchrun"))
    corpus = CORPUS + [{"question": "What is $1 + 1$?", "response": "$\\boxed{2}$"}]
    ckpt, key, info = train(smollm_path, {"model": "smollm2"}, corpus, [], cfg, StageCache(tmp_path))
    assert info["processes"] == 2 and info["steps"] == 2  # 4 examples over 2 ranks at batch 1
    assert not info["cached"] and (tmp_path / "stages" / "train" / key / "manifest.json").exists()
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    base = AutoModelForCausalLM.from_pretrained(smollm_path)
    changed = any(not (p1 == p2).all() for p1, p2 in zip(model.parameters(), base.parameters()))
    assert changed, "the launched training did not change the weights"
