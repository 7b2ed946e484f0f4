"""Discord's documented limits on what a bot may send, checked the way the API checks them.

Each function raises ApiError (usually 400 / 50035 Invalid Form Body) on the first request that
real Discord would refuse, so a bot's splitting and truncation logic can be tested for real.
Limits: https://discord.com/developers/docs/resources/message#create-message and
https://discord.com/developers/docs/resources/message#embed-object-embed-limits and
https://discord.com/developers/docs/interactions/application-commands#application-command-object.
"""

from __future__ import annotations

from typing import Any

from .errors import FormErrors, empty_message
from .models import OptionType

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
# (field, limit) for the string members of an embed.
_EMBED_TEXT_LIMITS = (("title", 256), ("description", 4096))
MAX_EMBED_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER_TEXT = 2048
MAX_AUTHOR_NAME = 256

MAX_COMMANDS = 100
MAX_OPTIONS = 25
MAX_CHOICES = 25
MAX_NAME = 32
MAX_DESCRIPTION = 100
MAX_CHOICE_NAME = 100
MAX_CHOICE_STRING_VALUE = 100

_ALLOWED_MENTION_TYPES = {"roles", "users", "everyone"}


def _too_long(errors: FormErrors, path: tuple[str | int, ...], limit: int) -> None:
    errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _embed_size(embed: dict[str, Any]) -> int:
    # The 6000-character budget counts titles, descriptions, field names and values,
    # footer text and author name across all embeds of a message.
    size = len(embed.get("title") or "") + len(embed.get("description") or "")
    size += len((embed.get("footer") or {}).get("text") or "")
    size += len((embed.get("author") or {}).get("name") or "")
    for embed_field in embed.get("fields") or []:
        size += len(embed_field.get("name") or "") + len(embed_field.get("value") or "")
    return size


def _check_embed(errors: FormErrors, index: int, embed: dict[str, Any]) -> None:
    for key, limit in _EMBED_TEXT_LIMITS:
        if len(embed.get(key) or "") > limit:
            _too_long(errors, ("embeds", index, key), limit)
    fields = embed.get("fields") or []
    if len(fields) > MAX_EMBED_FIELDS:
        _too_long(errors, ("embeds", index, "fields"), MAX_EMBED_FIELDS)
    for position, embed_field in enumerate(fields):
        for key, limit in (("name", MAX_FIELD_NAME), ("value", MAX_FIELD_VALUE)):
            value = embed_field.get(key)
            if not value:
                errors.add(
                    ("embeds", index, "fields", position, key), "BASE_TYPE_REQUIRED", "This field is required"
                )
            elif len(value) > limit:
                _too_long(errors, ("embeds", index, "fields", position, key), limit)
    if len((embed.get("footer") or {}).get("text") or "") > MAX_FOOTER_TEXT:
        _too_long(errors, ("embeds", index, "footer", "text"), MAX_FOOTER_TEXT)
    if len((embed.get("author") or {}).get("name") or "") > MAX_AUTHOR_NAME:
        _too_long(errors, ("embeds", index, "author", "name"), MAX_AUTHOR_NAME)


def _check_allowed_mentions(errors: FormErrors, allowed: dict[str, Any]) -> None:
    parse = allowed.get("parse") or []
    for position, kind in enumerate(parse):
        if kind not in _ALLOWED_MENTION_TYPES:
            errors.add(
                ("allowed_mentions", "parse", position),
                "BASE_TYPE_CHOICES",
                "Value must be one of {'roles', 'users', 'everyone'}.",
            )
    # Per the allowed mentions docs, listing ids and also parsing that type is a validation error.
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            errors.add(
                ("allowed_mentions",),
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
            )
        if len(allowed.get(kind) or []) > 100:
            _too_long(errors, ("allowed_mentions", kind), 100)


def check_message_body(body: dict[str, Any], *, has_files: bool = False, is_edit: bool = False) -> None:
    """Refuse a create/edit message body the way Discord does."""
    errors = FormErrors()
    content = body.get("content")
    if content is not None and len(str(content)) > MAX_CONTENT:
        _too_long(errors, ("content",), MAX_CONTENT)
    embeds = body.get("embeds") or []
    if len(embeds) > MAX_EMBEDS:
        _too_long(errors, ("embeds",), MAX_EMBEDS)
    for index, embed in enumerate(embeds):
        _check_embed(errors, index, embed)
    if sum(_embed_size(embed) for embed in embeds) > MAX_EMBED_TOTAL:
        errors.add(
            ("embeds",), "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}"
        )
    if body.get("allowed_mentions"):
        _check_allowed_mentions(errors, body["allowed_mentions"])
    errors.raise_if_any()
    if is_edit:
        return
    if not (
        content
        or embeds
        or has_files
        or body.get("sticker_ids")
        or body.get("components")
        or body.get("poll")
    ):
        raise empty_message()


def _valid_name(name: str) -> bool:
    # Discord's rule is ^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$ and, for slash commands and
    # their options, lower case wherever a letter has a lower-case form.
    return (
        0 < len(name) <= MAX_NAME and all(ch in "-_'" or ch.isalnum() for ch in name) and name == name.lower()
    )


def _check_described(
    errors: FormErrors, path: tuple[str | int, ...], item: dict[str, Any], what: str
) -> None:
    name = str(item.get("name") or "")
    if not _valid_name(name):
        errors.add((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", f"{what} name is invalid")
    description = str(item.get("description") or "")
    if not 0 < len(description) <= MAX_DESCRIPTION:
        errors.add(
            (*path, "description"),
            "BASE_TYPE_BAD_LENGTH",
            f"Must be between 1 and {MAX_DESCRIPTION} in length.",
        )


def _check_options(errors: FormErrors, path: tuple[str | int, ...], options: list[dict[str, Any]]) -> None:
    if len(options) > MAX_OPTIONS:
        _too_long(errors, path, MAX_OPTIONS)
    seen: set[str] = set()
    optional_seen = False
    for index, option in enumerate(options):
        here = (*path, index)
        _check_described(errors, here, option, "Option")
        if option.get("name") in seen:
            errors.add(
                (*here, "name"),
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option name already exists",
            )
        seen.add(str(option.get("name")))
        option_type = int(option.get("type") or 0)
        if option_type in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP):
            _check_options(errors, (*here, "options"), list(option.get("options") or []))
            continue
        if option.get("required"):
            if optional_seen:
                errors.add(
                    here,
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        choices = option.get("choices") or []
        if len(choices) > MAX_CHOICES:
            _too_long(errors, (*here, "choices"), MAX_CHOICES)
        if choices and option.get("autocomplete"):
            errors.add(
                (*here, "autocomplete"),
                "AUTOCOMPLETE_AND_CHOICES_INVALID",
                "Autocomplete and choices cannot both be set",
            )


def check_command_list(commands: list[dict[str, Any]]) -> None:
    """Refuse a bulk-overwrite of application commands the way Discord does."""
    errors = FormErrors()
    if len(commands) > MAX_COMMANDS:
        _too_long(errors, (), MAX_COMMANDS)
    seen: set[tuple[int, str]] = set()
    for index, command in enumerate(commands):
        command_type = int(command.get("type") or 1)
        key = (command_type, str(command.get("name")))
        if key in seen:
            errors.add(
                (index, "name"),
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Application command names must be unique: {key[1]}",
            )
        seen.add(key)
        if command_type == 1:
            _check_described(errors, (index,), command, "Command")
            _check_options(errors, (index, "options"), list(command.get("options") or []))
        elif not 0 < len(str(command.get("name") or "")) <= MAX_NAME:
            # User and message context menus allow capitals and spaces.
            errors.add(
                (index, "name"), "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {MAX_NAME} in length."
            )
    errors.raise_if_any()


def check_autocomplete_result(data: dict[str, Any]) -> None:
    """Refuse an autocomplete callback whose choices break Discord's limits."""
    errors = FormErrors()
    choices = data.get("choices")
    if choices is None:
        errors.add(("data", "choices"), "BASE_TYPE_REQUIRED", "This field is required")
        errors.raise_if_any()
        return
    if len(choices) > MAX_CHOICES:
        _too_long(errors, ("data", "choices"), MAX_CHOICES)
    for index, choice in enumerate(choices):
        name = str(choice.get("name") or "")
        if not 0 < len(name) <= MAX_CHOICE_NAME:
            errors.add(
                ("data", "choices", index, "name"),
                "BASE_TYPE_BAD_LENGTH",
                f"Must be between 1 and {MAX_CHOICE_NAME} in length.",
            )
        value = choice.get("value")
        if isinstance(value, str) and len(value) > MAX_CHOICE_STRING_VALUE:
            _too_long(errors, ("data", "choices", index, "value"), MAX_CHOICE_STRING_VALUE)
    errors.raise_if_any()
