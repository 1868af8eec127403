from omegaconf import OmegaConf

from ded.config import TrainConfig
from ded.train import checkpoint_key, make_trainer, to_dataset_rows

CORPUS = [
    {"question": "What is $2 + 3$?", "response": "$2 + 3 = 5$. The answer is $\\boxed{5}$."},
    {"question": "What is $41 + 1$?", "response": "$\\boxed{42}$"},
    {"question": "What is $7 \\times 8$?", "response": "$7 \\times 8 = 56$. The answer is $\\boxed{56}$."},
]


def test_loss_only_on_response_tokens_real_batch(smollm_path, tmp_path):
    """On a real collated batch, exactly the assistant response (and its end-of-turn) carries loss."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm_path)
    model = AutoModelForCausalLM.from_pretrained(smollm_path)
    prefix = [{"role": "system", "content": "Be brief."}]
    trainer = make_trainer(model, tok, to_dataset_rows(CORPUS, prefix), OmegaConf.structured(TrainConfig(batch_size=3)), str(tmp_path))
    batch = next(iter(trainer.get_train_dataloader()))
    seen = set()
    for ids, labels, attn in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        ids, labels = ids[attn.bool()], labels[attn.bool()]
        rendered = tok.apply_chat_template(
            prefix + [{"role": "user", "content": next(e["question"] for e in CORPUS if e["question"] in tok.decode(ids))}],
            tokenize=False, add_generation_prompt=True,
        )
        n_prompt = len(tok(rendered, add_special_tokens=False).input_ids)
        assert (labels[:n_prompt] == -100).all(), "a prompt token carries loss"
        assert (labels[n_prompt:] != -100).all(), "a response token is masked"
        assert (labels[n_prompt:] == ids[n_prompt:]).all()
        response = tok.decode(ids[n_prompt:])
        ex = next(e for e in CORPUS if response.startswith(e["response"]))
        assert response == ex["response"] + "<|im_end|>\n"  # the response, its end-of-turn, nothing else
        seen.add(ex["question"])
    assert len(seen) == 3
    assert (batch["labels"][~batch["attention_mask"].bool()] == -100).all()  # padding never carries loss


def test_checkpoint_key_tracks_corpus_and_config_not_logging():
    tc = OmegaConf.structured(TrainConfig())
    k = checkpoint_key({"model": "m"}, CORPUS, [], tc)
    assert k == checkpoint_key({"model": "m"}, CORPUS, [], OmegaConf.merge(tc, {"logging_steps": 99}))
    assert k != checkpoint_key({"model": "m"}, CORPUS[:2], [], tc)
    assert k != checkpoint_key({"model": "m"}, CORPUS, [], OmegaConf.merge(tc, {"learning_rate": 1e-4}))
    assert k != checkpoint_key({"model": "m"}, CORPUS, [], OmegaConf.merge(tc, {"seed": 1}))
