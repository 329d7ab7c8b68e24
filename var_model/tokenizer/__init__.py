"""The tokenizer stage: train (or load) the multi-scale VQVAE, then tokenise the data once.

from var_model.tokenizer import TokenizerStageConfig, run_tokenizer_stage, TokenCache
result = run_tokenizer_stage(TokenizerStageConfig.from_yaml("tokenizer.yaml"))
cache = TokenCache.open(result.cache_path)      # verified against its checksums
"""

from var_model.tokenizer.baseline import unigram_baselines
from var_model.tokenizer.cache import CacheBuild, TokenCache, build_token_cache, token_cache_key
from var_model.tokenizer.stage import (
    TokenizerStageConfig,
    TokenizerStageResult,
    load_official_tokenizer,
    run_tokenizer_stage,
)
from var_model.tokenizer.training import (
    TokenizerReport,
    TokenizerTrainingConfig,
    evaluate_tokenizer,
    reseed_dead_codes,
    train_tokenizer,
)
from var_model.tokenizer.weights import freeze, load_tokenizer, save_tokenizer, tokenizer_hash

__all__ = [
    "CacheBuild",
    "TokenCache",
    "TokenizerReport",
    "TokenizerStageConfig",
    "TokenizerStageResult",
    "TokenizerTrainingConfig",
    "build_token_cache",
    "evaluate_tokenizer",
    "freeze",
    "load_official_tokenizer",
    "load_tokenizer",
    "reseed_dead_codes",
    "run_tokenizer_stage",
    "save_tokenizer",
    "token_cache_key",
    "tokenizer_hash",
    "train_tokenizer",
    "unigram_baselines",
]
