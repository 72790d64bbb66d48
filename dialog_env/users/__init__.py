"""User simulators: who answers the retrieval system, and how.

``make_user("rule")`` gives the default rule-based user (:mod:`dialog_env.users.rule`),
``make_user("relative-attribute")`` the WhittleSearch-style relative-attribute user
(:mod:`dialog_env.users.relative_attribute`), ``make_user("captioner", checkpoint=PATH)`` the
paper's neural relative captioner (:mod:`dialog_env.users.captioner`, imported on first use so that
torch loads only when needed), ``make_user("corpus", captions=PATH)`` real shoppers' captions from
a caption file that are true of the pair (:mod:`dialog_env.users.corpus`); :func:`register_user`
adds others. The shoe attributes, salience
ranking and phrase grammar that the first two share live in :mod:`dialog_env.domain`.
"""

from dialog_env.users.base import UserSimulator, make_user, register_user, registered_users
from dialog_env.users.corpus import CorpusFeedback, CorpusUser
from dialog_env.users.relative_attribute import ORDINAL_ADJECTIVES, RelativeAttributeUser
from dialog_env.users.rule import DEFAULT_SALIENCE, Feedback, RuleBasedUser, Statement


def _captioner_user(**kwargs):  # noqa: ANN003, ANN202 - forwards to CaptionerUser
    from dialog_env.users.captioner import CaptionerUser

    return CaptionerUser(**kwargs)


register_user("captioner", _captioner_user)

__all__ = [
    "UserSimulator",
    "RuleBasedUser",
    "RelativeAttributeUser",
    "CorpusUser",
    "CorpusFeedback",
    "Feedback",
    "Statement",
    "DEFAULT_SALIENCE",
    "ORDINAL_ADJECTIVES",
    "make_user",
    "register_user",
    "registered_users",
]
