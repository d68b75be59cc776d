"""Who may do what: the permission model, decided in one function (``authorize``).

A caller (``Identity``) comes from the verified token only (api/auth.py): its ``sub``, its
group names (the groups claim, parsed as issue 9 does: exact names, never split), and
whether it is a service client (a client-credentials token carrying the service scope).

Roles:
    admin             the admin group (``JOBQ_ADMIN_GROUP``): everything.
    read-only         the reader group (``JOBQ_READER_GROUP``): sees every queue, job,
                      schedule and audit entry; changes nothing (403 on every write).
    queue groups      a queue's policy (``PATCH /queues/{name}`` ``access``) names groups
                      that may ``create`` jobs on it (absent: every user), ``read`` all its
                      jobs, or ``operate`` it (which includes reading).
    service client    may create and read jobs for a user it names (``onBehalfOf``), on
                      the queues whose policy lists its client id in ``serviceClients``.
    user              creates jobs where the queue lets them, and reads and changes their own.

Actions on a queue take its ``QueueAccess``; stack-wide ones (``INSPECT``, ``ADMINISTER``) do not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import Field

from shared.camel import CamelModel
from shared.errors import Forbidden

GROUP_NAME = r"^[^\x00-\x1f]{1,128}$"
CLIENT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class Action(StrEnum):
    OWN = "own"  # read one's own jobs (for a service client: the named user's, on its queues)
    CHANGE_OWN = "change-own"  # cancel or retry one's own job
    CREATE = "create"  # create a job on the queue
    VIEW = "view"  # the queue's stats, metrics, configuration
    READ = "read"  # every job of the queue, whoever owns it, and its dead letters
    OPERATE = "operate"  # pause, resume, clean, remove, redrive, purge, policy, targets; others' jobs
    INSPECT = "inspect"  # stack-wide reads: every queue, schedules, detailed health, audit
    ADMINISTER = "administer"  # stack-wide changes: schedules


READS = frozenset({Action.OWN, Action.VIEW, Action.READ, Action.INSPECT})


class QueueAccess(CamelModel):
    """A queue's permissions, part of its runtime policy. The defaults are the behaviour before
    per-queue permissions: every user creates, nobody but admins (and readers) reads others' jobs."""

    create: list[str] | None = Field(
        default=None, max_length=50, description="Groups that may create jobs here; absent or null: every user."
    )
    read: list[str] = Field(default_factory=list, max_length=50, description="Groups that may read every job of this queue.")
    operate: list[str] = Field(
        default_factory=list, max_length=50, description="Groups that may operate this queue (pause, clean, redrive, purge, policy, targets)."
    )
    service_clients: list[str] = Field(
        default_factory=list, max_length=50, description="Client ids of service clients that may create and read jobs here for users."
    )


@dataclass(frozen=True)
class Identity:
    """Who calls. ``user_id`` is the namespace requests address: the token's ``sub``, or, for a
    service client acting for a user, that user. ``client_id`` is set for service clients only."""

    user_id: str
    is_admin: bool = False
    groups: frozenset[str] = field(default_factory=frozenset)
    is_reader: bool = False
    client_id: str | None = None
    acting_for_user: bool = False  # a service client named the user (onBehalfOf)

    @property
    def sees_everything(self) -> bool:
        return self.client_id is None and (self.is_admin or self.is_reader)

    def acting_for(self, user_id: str) -> Identity:
        """A service client's identity for ``user_id``; anyone else may not act for others."""
        if self.client_id is None:
            raise Forbidden("only service clients may act on behalf of a user (onBehalfOf)")
        return Identity(user_id=user_id, client_id=self.client_id, acting_for_user=True)


def groups_of(value: Any) -> set[str]:
    """The group names a verified token's groups claim holds, never split inside a name.

    * a JSON list (``["admin", "Domain admin"]``): its items, exactly;
    * a string holding a JSON list (``'["admin"]'``): the same;
    * API Gateway's rendering of a list claim, ``[a b c]``: it joins the names with spaces,
      so ``[Domain admin]`` may be one group or two. We do not guess: the whole text
      between the brackets is one name. ``[admin]`` is the group ``admin``; ``[not admin]``
      is the group ``not admin``; ``[sales,admin]`` is the group ``sales,admin``. A user
      in several groups is therefore admin behind API Gateway only through a claim that
      arrives as a JSON list or holds just the admin group (README: "Who is admin");
    * any other string: one name.

    The HTTP API (api/auth.py) and the WebSocket API's $connect (shared/realtime_auth.py) both read
    groups through this one function, so a token has the same groups on both.
    """
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    if not isinstance(value, str) or not value:
        return set()
    if value.startswith("[") and value.endswith("]"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {value[1:-1]}
        return {v for v in parsed if isinstance(v, str)} if isinstance(parsed, list) else set()
    return {value}


def may_read_job(caller: Identity, owner: str, access: QueueAccess | None) -> bool:
    """Whether ``caller`` may read a job of ``owner`` on the queue whose permissions are ``access``:
    one's own always (a service client's: on its queues); another user's when the queue lets the
    caller read all its jobs (admins, readers, its read and operate groups)."""
    own = owner == caller.user_id
    if own and caller.client_id is None:
        return True  # a user's own jobs, whatever the queue's policy says today
    return allows(caller, Action.OWN if own else Action.READ, access)


def allows(caller: Identity, action: Action, access: QueueAccess | None = None) -> bool:
    """Whether ``caller`` may do ``action`` (on the queue whose permissions are ``access``)."""
    if caller.client_id is not None:
        # Service clients: only for a user they named, only on queues that list them.
        return (
            action in (Action.OWN, Action.CREATE)
            and caller.acting_for_user
            and access is not None
            and caller.client_id in access.service_clients
        )
    if caller.is_admin:
        return True
    if caller.is_reader:
        return action in READS
    if action is Action.OWN or action is Action.CHANGE_OWN:
        return True
    if access is None:
        return False
    if action is Action.CREATE:
        return access.create is None or bool(caller.groups.intersection(access.create))
    if action in (Action.VIEW, Action.READ):
        return bool(caller.groups.intersection(access.read) or caller.groups.intersection(access.operate))
    if action is Action.OPERATE:
        return bool(caller.groups.intersection(access.operate))
    return False


def authorize(caller: Identity, action: Action, access: QueueAccess | None = None, *, queue: str | None = None) -> None:
    """``Forbidden`` unless ``caller`` may do ``action``: the one check every route goes through."""
    if allows(caller, action, access):
        return
    where = f" on queue '{queue}'" if queue else ""
    if caller.client_id is not None:
        if not caller.acting_for_user:
            raise Forbidden("a service client acts for a user: name them with onBehalfOf or the X-On-Behalf-Of header")
        raise Forbidden(f"this service client may not {action.value} jobs{where}")
    if caller.is_reader:
        raise Forbidden("the read-only operator role changes nothing")
    if action in (Action.INSPECT, Action.ADMINISTER):
        raise Forbidden("this operation needs the admin group")
    raise Forbidden(f"your groups may not {action.value}{where}")


__all__ = ["Action", "Identity", "QueueAccess", "allows", "authorize", "groups_of", "may_read_job"]
