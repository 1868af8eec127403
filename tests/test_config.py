from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, ListConfig, OmegaConf

from conftest import CONF, compose
from ded.config import ConfigError
from ded.plugins import validate


def test_default_composes_into_the_schema_with_the_yaml_values():
    """Every section becomes its dataclass, the model sections their backend's schema, holding what the yamls say."""
    from ded.config import Config, CorpusConfig, DiversityConfig, TrainConfig
    from ded.generation.backends import BACKENDS

    obj = validate(compose(["paths.output_dir=/tmp/x"]))
    assert isinstance(obj, Config) and isinstance(obj.corpus, CorpusConfig) and isinstance(obj.diversity, DiversityConfig)
    assert isinstance(obj.train, TrainConfig)
    conf = Path(CONF)
    for section, group, name in [("corpus", "corpus", "arithmetic"), ("teacher", "teacher", "smollm2_fewshot"), ("diversity", "diversity", "levenshtein")]:
        yaml_values = {k: v for k, v in OmegaConf.load(conf / group / f"{name}.yaml").items() if k != "defaults" and not isinstance(v, (dict, list, DictConfig, ListConfig))}
        assert yaml_values, group
        for key, value in yaml_values.items():
            assert getattr(getattr(obj, section), key) == value, f"{section}.{key}"
    assert type(obj.teacher) is BACKENDS[obj.teacher.backend].config and type(obj.student) is BACKENDS[obj.student.backend].config


@pytest.mark.parametrize("group", ["teacher", "student", "corpus", "diversity", "train", "eval", "logger"])
def test_every_group_option_composes(group):
    from pathlib import Path

    from conftest import CONF

    for f in sorted((Path(CONF) / group).glob("*.yaml")):
        validate(compose([f"{group}={f.stem}", "paths.output_dir=/tmp/x"]))


def test_unknown_group_option_lists_allowed_values():
    with pytest.raises(ConfigCompositionException) as e:
        compose(["diversity=edit_distance"])
    msg = str(e.value)
    assert "diversity" in msg and "levenshtein" in msg and "random" in msg


def test_unknown_metric_value_names_key_and_allowed():
    with pytest.raises(ConfigError) as e:
        validate(compose(["diversity.metric=cosine", "paths.output_dir=/tmp/x"]))
    msg = str(e.value)
    assert "diversity.metric" in msg and "levenshtein" in msg and "embedding" in msg


def test_typo_key_fails_at_compose():
    with pytest.raises(ConfigCompositionException) as e:
        compose(["corpus.siz=3"])
    assert "siz" in str(e.value) + str(e.value.__cause__)


def test_wrong_type_fails_at_compose():
    with pytest.raises(ConfigCompositionException) as e:
        compose(["corpus.size=many"])
    assert "corpus.size" in str(e.value) + str(e.value.__cause__)


@pytest.mark.parametrize(
    "override,key",
    [
        ("corpus.size=-3", "corpus.size"),
        ("corpus.trajectories.p=9", "corpus.trajectories.p"),
        ("corpus.pass_rate.max_rate=1.5", "corpus.pass_rate.max_rate"),
        ("corpus.levels=[1,7]", "corpus.levels"),
        ("train.lr_scheduler_type=cosine_wobble", "train.lr_scheduler_type"),
        ("train.warmup_steps=-1", "train.warmup_steps"),
        ("corpus.decontam.dedup=fuzzzy", "corpus.decontam.dedup"),
        ("logger.mode=onlin", "logger.mode"),
        ("eval.k=0", "eval.k"),
    ],
)
def test_range_errors_name_the_key(override, key):
    cfg = compose([override, "paths.output_dir=/tmp/x"])
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert str(e.value).startswith(key)


def test_debug_and_logger_none():
    cfg = compose(["debug=tiny", "logger=none", "paths.output_dir=/tmp/x"])
    obj = validate(cfg)
    assert obj.debug == "tiny" and obj.corpus.pool_size == 8 and obj.logger.backend == "none"


def test_joblib_launcher_composes():
    cfg = compose(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], return_hydra_config=True)
    assert "joblib" in cfg.hydra.launcher._target_.lower() and cfg.hydra.launcher.n_jobs == 2


def test_accelerate_recipes_are_valid_accelerate_configs():
    from pathlib import Path

    from accelerate.commands.config.config_args import ClusterConfig

    from conftest import ROOT

    kinds = {}
    for f in sorted((Path(ROOT) / "recipes" / "accelerate").glob("*.yaml")):
        c = ClusterConfig.from_yaml_file(str(f))  # accelerate's own parser rejects unknown keys
        kinds[f.stem] = str(c.distributed_type)
    assert {"ddp", "zero3", "zero3_offload", "fsdp"} <= set(kinds)
    assert "DEEPSPEED" in kinds["zero3"] and "FSDP" in kinds["fsdp"] and "MULTI_GPU" in kinds["ddp"]


def test_per_set_sampling_from_an_experiment_and_unknown_names():
    obj = validate(compose(["experiment=paper_32b", "paths.output_dir=/tmp/x"]))
    assert obj.eval.per_set["mmlu_stem"].max_new_tokens == 8192
    assert obj.eval.sampling.max_new_tokens == 32768  # the others keep eval.sampling
    from omegaconf import open_dict

    cfg = compose(["paths.output_dir=/tmp/x"])
    with open_dict(cfg):
        from ded.config import Sampling

        cfg.eval.per_set["aime99"] = Sampling(max_new_tokens=8)
    with pytest.raises(ConfigError, match="eval.per_set: unknown set"):
        validate(cfg)


def test_renamed_eval_keys_still_work_with_a_deprecation_message(caplog):
    """eval.benchmarks / eval.per_benchmark (before the rename) set eval.sets / eval.per_set, saying so; both at once is an error."""
    with caplog.at_level("WARNING", logger="ded"):
        obj = validate(compose(["eval.benchmarks=[gsm8k]", "+eval.per_benchmark={gsm8k: {max_new_tokens: 16}}", "paths.output_dir=/tmp/x"]))
    assert obj.eval.sets == ["gsm8k"] and obj.eval.per_set["gsm8k"].max_new_tokens == 16
    assert "eval.benchmarks is deprecated" in caplog.text and "eval.per_benchmark is deprecated" in caplog.text
    with pytest.raises(ConfigError, match="eval.benchmarks: renamed eval.sets"):
        validate(compose(["eval.benchmarks=[gsm8k]", "eval.sets=[math500]", "paths.output_dir=/tmp/x"]))
    with pytest.raises(ConfigError, match=r"eval.sets: unknown set\(s\) \['aime99'\]"):
        validate(compose(["eval.benchmarks=[aime99]", "paths.output_dir=/tmp/x"]))
