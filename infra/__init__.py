"""Infrastructure: the per-queue nested template (queue.yaml) and the local stack (infra.local)."""
