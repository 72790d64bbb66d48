"""User simulators: who answers the retrieval system, and how.

``make_user("rule")`` gives the default rule-based user, ``make_user("relative-attribute")`` the
WhittleSearch-style relative-attribute user, ``make_user("captioner", checkpoint=PATH)`` the
paper's neural relative captioner (:mod:`dialog_env.users.captioner`, imported on first use so that
torch loads only when needed); :func:`register_user` adds others.
"""

from dialog_env.users.attribute import Feedback, RuleBasedUser, Statement
from dialog_env.users.base import UserSimulator, make_user, register_user, registered_users
from dialog_env.users.relative import RelativeAttributeUser


def _captioner_user(**kwargs):  # noqa: ANN003, ANN202 - forwards to CaptionerUser
    from dialog_env.users.captioner import CaptionerUser

    return CaptionerUser(**kwargs)


register_user("captioner", _captioner_user)

__all__ = ["UserSimulator", "RuleBasedUser", "RelativeAttributeUser", "Feedback", "Statement", "make_user", "register_user", "registered_users"]
