"""Dialog-based interactive image retrieval as a Gymnasium environment.

``import dialog_env`` registers ``DialogRetrieval-v0``; ``gym.make("dialog_env:DialogRetrieval-v0")``
imports this package itself.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from dialog_env.ann import KNN_BACKENDS, KnnIndex, make_knn_index
from dialog_env.catalog import AttributeSchema, Catalog, SpatialFeatures
from dialog_env.dynamics import REWARD_FUNCTIONS, DialogModel, InteractionBudget, Response, RewardFunction
from dialog_env.env import REWARD_MODES, DialogRetrievalEnv, make_catalog
from dialog_env.errors import (
    CaptionFormatError,
    CaptionNotFoundError,
    CatalogError,
    CatalogFormatError,
    CatalogNotFoundError,
    ConfigurationError,
    DataFileNotFoundError,
    DataFormatError,
    DependencyNotInstalled,
    DialogEnvError,
    InvalidActionError,
    ResetNeeded,
    UserSimulatorError,
    VocabularyError,
)
from dialog_env.ranking import Ranker, rank_percentile
from dialog_env.synthetic import (
    SHOE_ATTRIBUTES,
    SyntheticShoesConfig,
    default_catalog,
    make_synthetic_shoes,
    write_synthetic_shoes,
)
from dialog_env.text import MAX_FEEDBACK_TOKENS, Vocabulary, tokenize
from dialog_env.tolerance import ShopperTolerance
from dialog_env.users import RuleBasedUser, UserSimulator, make_user, register_user
from dialog_env.vector import DialogRetrievalVectorEnv
from dialog_env.wrappers import QueryAction

__version__ = "0.1.0"

__all__ = [
    "AttributeSchema",
    "Catalog",
    "CatalogError",
    "CatalogFormatError",
    "CatalogNotFoundError",
    "CaptionFormatError",
    "CaptionNotFoundError",
    "ConfigurationError",
    "DataFileNotFoundError",
    "DataFormatError",
    "DependencyNotInstalled",
    "DialogEnvError",
    "DialogModel",
    "DialogRetrievalEnv",
    "DialogRetrievalVectorEnv",
    "InteractionBudget",
    "InvalidActionError",
    "KNN_BACKENDS",
    "KnnIndex",
    "MAX_FEEDBACK_TOKENS",
    "QueryAction",
    "REWARD_FUNCTIONS",
    "REWARD_MODES",
    "Ranker",
    "ResetNeeded",
    "Response",
    "RewardFunction",
    "RuleBasedUser",
    "SHOE_ATTRIBUTES",
    "ShopperTolerance",
    "SpatialFeatures",
    "SyntheticShoesConfig",
    "UserSimulator",
    "UserSimulatorError",
    "Vocabulary",
    "VocabularyError",
    "default_catalog",
    "make_catalog",
    "make_knn_index",
    "make_synthetic_shoes",
    "make_user",
    "rank_percentile",
    "register_user",
    "tokenize",
    "write_synthetic_shoes",
]

if "DialogRetrieval-v0" not in registry:
    register(
        id="DialogRetrieval-v0",
        entry_point="dialog_env.env:DialogRetrievalEnv",
        vector_entry_point="dialog_env.vector:DialogRetrievalVectorEnv",
    )
