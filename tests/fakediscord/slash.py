"""Turn "the user typed /stats date:2021-08-27 lang:en" into the `data` of an interaction.

Works from the command schema the bot registered, so a test exercises exactly what Discord
would send: typed option values, nested sub-commands and `resolved` users, channels and roles
(https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-object-application-command-data-structure).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .models import Channel, OptionType, RegisteredCommand, Role, User
from .payloads import member_payload, role_payload, user_payload
from .world import World

OptionValue = str | int | float | bool | User | Channel | Role

_NESTING = (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP)


class SlashInvocationError(ValueError):
    """The test asked for an invocation Discord's client would not let a user make."""


def find_command(
    commands: Iterable[RegisteredCommand], name: str, *, guild_id: int | None
) -> RegisteredCommand:
    """The registered slash command a user would pick, guild commands first, as Discord lists them."""
    root = name.split()[0]
    candidates = [c for c in commands if c.name == root and c.type == 1 and c.guild_id in (guild_id, None)]
    candidates.sort(key=lambda c: c.guild_id is None)
    if not candidates:
        known = sorted({f"/{c.name}" for c in commands if c.type == 1})
        raise SlashInvocationError(
            f"/{root} is not registered (did the bot sync its command tree?); registered: {known}"
        )
    return candidates[0]


def _leaf_schema(command: RegisteredCommand, name: str) -> tuple[list[tuple[str, int]], list[dict[str, Any]]]:
    """The (name, type) of each sub-command group/sub-command below the root, and the leaf's options."""
    path: list[tuple[str, int]] = []
    schemas = command.options
    for part in name.split()[1:]:
        match = next((o for o in schemas if o["name"] == part and o["type"] in _NESTING), None)
        if match is None:
            raise SlashInvocationError(f"/{command.name} has no sub-command {part!r}")
        path.append((part, int(match["type"])))
        schemas = list(match.get("options") or [])
    if any(o["type"] in _NESTING for o in schemas):
        subs = [o["name"] for o in schemas if o["type"] in _NESTING]
        raise SlashInvocationError(f"/{name} is a group; pick one of its sub-commands {subs}")
    return path, schemas


def _check_bounds(name: str, schema: dict[str, Any], value: Any) -> None:
    choices = schema.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise SlashInvocationError(
            f"{name}={value!r} is not one of the choices {[c['value'] for c in choices]}"
        )
    low, high = schema.get("min_value"), schema.get("max_value")
    if (low is not None and value < low) or (high is not None and value > high):
        raise SlashInvocationError(f"{name}={value!r} is outside [{low}, {high}]")
    if isinstance(value, str):
        shortest, longest = schema.get("min_length"), schema.get("max_length")
        if (shortest is not None and len(value) < shortest) or (longest is not None and len(value) > longest):
            raise SlashInvocationError(f"{name}={value!r} length is outside [{shortest}, {longest}]")


def _add_user(resolved: dict[str, Any], user: User, world: World, guild_id: int | None) -> None:
    resolved.setdefault("users", {})[str(user.id)] = user_payload(user)
    member = world.members.get(user.id)
    if guild_id is not None and member is not None:
        resolved.setdefault("members", {})[str(user.id)] = member_payload(
            member, with_user=False, permissions=world.permissions(user)
        )


def _wire_value(
    name: str,
    schema: dict[str, Any],
    value: OptionValue,
    world: World,
    guild_id: int | None,
    resolved: dict[str, Any],
    invoker_permissions: int,
) -> Any:
    """The JSON value Discord puts in the option, adding any `resolved` entries it implies."""
    kind = OptionType(int(schema["type"]))
    wrong = SlashInvocationError(f"{name}={value!r} does not fit option type {kind.name}")
    if kind is OptionType.STRING:
        if not isinstance(value, str):
            raise wrong
    elif kind is OptionType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
    elif kind is OptionType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
    elif kind is OptionType.BOOLEAN:
        if not isinstance(value, bool):
            raise wrong
    elif kind in (OptionType.USER, OptionType.MENTIONABLE) and isinstance(value, User):
        _add_user(resolved, value, world, guild_id)
        return str(value.id)
    elif kind in (OptionType.ROLE, OptionType.MENTIONABLE) and isinstance(value, Role):
        resolved.setdefault("roles", {})[str(value.id)] = role_payload(value)
        return str(value.id)
    elif kind is OptionType.CHANNEL and isinstance(value, Channel):
        allowed_types = schema.get("channel_types")
        if allowed_types and int(value.type) not in allowed_types:
            raise SlashInvocationError(f"{name}: channel type {value.type.name} is not in {allowed_types}")
        entry: dict[str, Any] = {
            "id": str(value.id),
            "name": value.name,
            "type": int(value.type),
            "parent_id": None,
        }
        # A resolved channel carries the invoking member's permissions in it.
        entry["permissions"] = str(invoker_permissions)
        if value.guild_id is not None:
            entry["guild_id"] = str(value.guild_id)
        resolved.setdefault("channels", {})[str(value.id)] = entry
        return str(value.id)
    else:
        raise SlashInvocationError(f"{name}: option type {kind.name} is not modelled for {value!r}")
    _check_bounds(name, schema, value)
    return value


def command_data(
    command: RegisteredCommand,
    name: str,
    values: Mapping[str, OptionValue],
    world: World,
    *,
    guild_id: int | None,
    invoker: User,
    focused: str | None = None,
) -> dict[str, Any]:
    """The interaction `data` for running (or, with `focused`, autocompleting) /`name` with `values`."""
    path, schemas = _leaf_schema(command, name)
    by_name = {s["name"]: s for s in schemas}
    unknown = set(values) - set(by_name)
    if unknown:
        raise SlashInvocationError(f"/{name} has no option(s) {sorted(unknown)}; it has {list(by_name)}")
    resolved: dict[str, Any] = {}
    options: list[dict[str, Any]] = []
    if focused is not None:
        schema = by_name.get(focused)
        if schema is None or not schema.get("autocomplete"):
            raise SlashInvocationError(f"/{name} option {focused!r} does not use autocomplete")
    else:
        missing = [s["name"] for s in schemas if s.get("required") and s["name"] not in values]
        if missing:
            raise SlashInvocationError(f"/{name} is missing required option(s) {missing}")
    # Options arrive in schema order, like the client sends them once the user has filled them in.
    for schema in schemas:
        option_name = schema["name"]
        if option_name not in values:
            continue
        value = values[option_name]
        option: dict[str, Any] = {"name": option_name, "type": int(schema["type"])}
        if option_name == focused:
            # While typing, the focused option carries the raw text, whatever its declared type.
            option["value"] = str(value)
            option["focused"] = True
        else:
            option["value"] = _wire_value(
                option_name, schema, value, world, guild_id, resolved, world.permissions(invoker)
            )
        options.append(option)
    nested = options
    for part, part_type in reversed(path):
        nested = [{"name": part, "type": part_type, "options": nested}]
    data: dict[str, Any] = {"id": str(command.id), "name": command.name, "type": 1, "options": nested}
    if resolved and focused is None:
        data["resolved"] = resolved
    if command.guild_id is not None:
        data["guild_id"] = str(command.guild_id)
    return data
