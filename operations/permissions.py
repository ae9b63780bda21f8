"""Who may read and who may steer the drains through the API. Never grants anything by itself
being staff: the model permissions are the contract, so scripts can run as non-staff users."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

VIEW_PERMISSION = "drains.view_draincontrol"
CHANGE_PERMISSION = "drains.change_draincontrol"


def lacks_change_permission(action: str) -> str:
    """Why a view-only user's button for ``action`` is disabled: the permission it needs."""
    return (f"{action} needs the permission {CHANGE_PERMISSION} (\"Can change drain control\"); "
            "you can only view. An administrator grants it in the admin.")


class CanViewDrains(BasePermission):
    """Reading the snapshot needs drains.view_draincontrol."""

    message = "You need the permission drains.view_draincontrol to see the drains."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("drains.view_draincontrol"))


class CanChangeDrains(BasePermission):
    """Toggling a burst needs drains.change_draincontrol."""

    message = "You need the permission drains.change_draincontrol to start or stop a burst."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("drains.change_draincontrol"))
