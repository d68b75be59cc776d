"""Moved to shared/adapters/policy.py (kept until every caller imports it from there)."""

from shared.adapters.policy import POLICY_SK, delete_target, get_policy, put_policy, read_policy, reset_cache, update_policy

__all__ = ["POLICY_SK", "delete_target", "get_policy", "put_policy", "read_policy", "reset_cache", "update_policy"]
