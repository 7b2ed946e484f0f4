"""Discord's JSON error responses (https://discord.com/developers/docs/topics/opcodes-and-status-codes)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the fake answers with, carrying Discord's status, numeric code and message."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def unauthorized() -> ApiError:
    return ApiError(401, 0, "401: Unauthorized")


def not_found(code: int, what: str) -> ApiError:
    return ApiError(404, code, what)


def unknown_channel() -> ApiError:
    return not_found(10003, "Unknown Channel")


def unknown_message() -> ApiError:
    return not_found(10008, "Unknown Message")


def unknown_webhook() -> ApiError:
    return not_found(10015, "Unknown Webhook")


def unknown_interaction() -> ApiError:
    return not_found(10062, "Unknown interaction")


def unknown_application() -> ApiError:
    return not_found(10002, "Unknown Application")


def already_acknowledged() -> ApiError:
    return ApiError(400, 40060, "Interaction has already been acknowledged.")


def empty_message() -> ApiError:
    return ApiError(400, 50006, "Cannot send an empty message")


def cannot_edit_others_message() -> ApiError:
    return ApiError(403, 50005, "Cannot edit a message authored by another user")


class FormErrors:
    """Collects field errors into Discord's nested `errors` object for a 50035 Invalid Form Body."""

    def __init__(self) -> None:
        self.errors: dict[str, Any] = {}

    def add(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        node = self.errors
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def raise_if_any(self) -> None:
        if self.errors:
            raise ApiError(400, 50035, "Invalid Form Body", self.errors)
