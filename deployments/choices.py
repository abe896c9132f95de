"""Enumerations of deployments and rollouts."""

from django.db import models

from deployments.rendering import constants as c


class Colour(models.TextChoices):
    BLUE = "blue", "Blue"
    GREEN = "green", "Green"


class RolloutState(models.TextChoices):
    """Blue/green steps, in order (Argo Rollouts' semantics), then the terminal states."""

    PENDING = "pending", "Pending"
    WEIGHTS = "weights", "Caching weights"
    CREATING = "creating", "Creating the new side"
    WAITING_READY = "waiting_ready", "Waiting for every replica"
    PRE_PROMOTION = "pre_promotion", "Pre-promotion checks"
    AWAITING_PROMOTION = "awaiting_promotion", "Awaiting promotion"
    PROMOTING = "promoting", "Switching traffic"
    POST_PROMOTION = "post_promotion", "Post-promotion checks"
    SCALE_DOWN_DELAY = "scale_down_delay", "Old side on standby"
    SCALING_DOWN = "scaling_down", "Scaling the old side down"
    COMPLETED = "completed", "Completed"
    ABORTED = "aborted", "Aborted"
    FAILED = "failed", "Failed"
    ROLLED_BACK = "rolled_back", "Rolled back"


TERMINAL_STATES = frozenset(
    {RolloutState.COMPLETED, RolloutState.ABORTED, RolloutState.FAILED, RolloutState.ROLLED_BACK}
)
ACTIVE_STATES = frozenset(set(RolloutState) - TERMINAL_STATES)
# Progress order, for the progress bar.
STEP_ORDER = [
    RolloutState.PENDING,
    RolloutState.WEIGHTS,
    RolloutState.CREATING,
    RolloutState.WAITING_READY,
    RolloutState.PRE_PROMOTION,
    RolloutState.AWAITING_PROMOTION,
    RolloutState.PROMOTING,
    RolloutState.POST_PROMOTION,
    RolloutState.SCALE_DOWN_DELAY,
    RolloutState.SCALING_DOWN,
    RolloutState.COMPLETED,
]


class PromotionMode(models.TextChoices):
    AUTOMATIC = "automatic", "Automatic, once checks pass"
    AFTER_DELAY = "after_delay", "Automatic, after a delay"
    MANUAL = "manual", "Manual"


class DeletionStep(models.TextChoices):
    """Where a deployment's deletion is, in order (deployments/deletion.py runs them)."""

    WAITING = "waiting", "Waiting for the running rollout step"
    KUBERNETES = "kubernetes", "Removing Kubernetes objects"
    RECORDS = "records", "Removing records"


DELETION_ORDER = [DeletionStep.WAITING, DeletionStep.KUBERNETES, DeletionStep.RECORDS]


class WeightsStrategy(models.TextChoices):
    """Where a tier's pods find their weights (deployments/rendering/weights.py)."""

    SHARED_VOLUME = c.WEIGHTS_SHARED_VOLUME, "Shared volume (ReadWriteMany, downloaded once)"
    NODE_LOCAL = c.WEIGHTS_NODE_LOCAL, "Node-local (each pod downloads into its own disk)"
    SINGLE_NODE_VOLUME = c.WEIGHTS_SINGLE_NODE_VOLUME, "Single-node volume (ReadWriteOnce)"
