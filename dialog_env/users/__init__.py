"""User simulators: who answers the retrieval system, and how.

``make_user("rule")`` gives the default rule-based user, ``make_user("relative-attribute")`` the
WhittleSearch-style relative-attribute user; :func:`register_user` adds others.
"""

from dialog_env.users.attribute import Feedback, RuleBasedUser, Statement
from dialog_env.users.base import UserSimulator, make_user, register_user, registered_users
from dialog_env.users.relative import RelativeAttributeUser

__all__ = ["UserSimulator", "RuleBasedUser", "RelativeAttributeUser", "Feedback", "Statement", "make_user", "register_user", "registered_users"]
